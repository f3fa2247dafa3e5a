namespace Medformer.Tracking.Interop;

/// <summary>
/// What <c>medformer export</c> adds to a model folder for PyTorch users: medformer.py (the PyTorch twin of the model,
/// same modules and state_dict keys) and a README.md with the three lines that load it.
/// </summary>
public static class PyTorchExport
{
    public const string ModelCode = "medformer.py";
    public const string Readme = "README.md";
    const string ModelCodeResource = "Medformer.Tracking.Interop.medformer.py";

    /// <summary>medformer.py and README.md, as file name → writer (the extra files of Checkpoint.Save's atomic write).</summary>
    public static IReadOnlyDictionary<string, Action<string>> Extras(string source, long parameters) => new Dictionary<string, Action<string>>
    {
        [ModelCode] = path =>
        {
            using var stream = typeof(PyTorchExport).Assembly.GetManifestResourceStream(ModelCodeResource)
                ?? throw new InvalidOperationException($"the assembly lacks its resource {ModelCodeResource}");
            using var file = File.Create(path);
            stream.CopyTo(file);
        },
        [Readme] = path => File.WriteAllText(path, ReadmeText(source, parameters)),
    };

    static string ReadmeText(string source, long parameters) => $$"""
        # Medformer weights for PyTorch

        Exported by `medformer export` from `{{source}}`: {{parameters:N0}} parameters.

        * `config.json`: the model's hyper-parameters (snake_case keys).
        * `model.safetensors`: the weights, float32, contiguous, PyTorch-style names (`blocks.0.attn.qkv.weight`).
        * `medformer.py`: the model in PyTorch (same modules, same names, same maths as the C# model).

        ```python
        from safetensors.torch import load_file
        from medformer import Medformer

        model = Medformer("config.json")                    # builds the modules from the config
        model.load_state_dict(load_file("model.safetensors"), strict=True)
        latents = model(images, [("chest", "xray", "classification")] * images.shape[0])   # [B, latents, dim]
        ```

        Images are `[B, C, H, W]` or `[B, C, D, H, W]` float32, sizes a multiple of the patch size; each sample's
        (organ, modality, task) picks its latent banks (unknown names fall back to `other`). `model.decode(latents,
        model.position_queries([H, W]))` decodes at any resolution.

        """;
}
