using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Tracking.Interop;

/// <summary>A fine-tuned model's head, as export takes it: head.json's bytes, its kind and its weights (float32).</summary>
public sealed record ExportedHead(string Kind, byte[] Description, IReadOnlyDictionary<string, Tensor> Weights)
{
    /// <summary>Whether medformer.py has the head's class (<see cref="PyTorchExport.TwinnedHeads"/>).</summary>
    public bool HasTwin => PyTorchExport.TwinnedHeads.Contains(Kind);
}

/// <summary>
/// What <c>medformer export</c> adds to a model folder for PyTorch users: medformer.py (the PyTorch twin of the model
/// and of the built-in heads, same modules and state_dict keys, with FineTuned: a model and its head as predict runs
/// them), safetensors_load.py (a from-spec reader, so a PyTorch without the safetensors package loads the folder), a
/// fine-tuned model's head (head.safetensors and head.json), model.pt with <c>--format pt</c> (torch.save's format, <see cref="TorchSave"/>) and a README.md whose
/// loading lines run on a bare PyTorch.
/// </summary>
public static class PyTorchExport
{
    public const string ModelCode = "medformer.py";
    public const string Loader = "safetensors_load.py";
    public const string Readme = "README.md";
    public const string TorchFile = "model.pt";
    public const string HeadWeights = "head.safetensors";
    public const string HeadDescription = "head.json";

    /// <summary>The head kinds medformer.py has a class for (its HEADS): the built-in ones.</summary>
    public static IReadOnlySet<string> TwinnedHeads { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "classification", "segmentation", "restoration", "super-resolution", "translation",
    };

    /// <summary>The dense kinds among <see cref="TwinnedHeads"/>: FineTuned returns a label map or images, by sliding windows where sizes differ.</summary>
    static readonly IReadOnlySet<string> DenseHeads = new HashSet<string>(StringComparer.Ordinal) { "segmentation", "restoration", "super-resolution", "translation" };

    /// <summary>
    /// The files besides config.json and model.safetensors, as file name → writer (the extra files of
    /// Checkpoint.WriteFiles' atomic write). <paramref name="weights"/> are the model's (float32, contiguous).
    /// </summary>
    public static IReadOnlyDictionary<string, Action<string>> Extras(string source, long parameters, IReadOnlyDictionary<string, Tensor> weights,
        ExportedHead? head, bool torchSave)
    {
        var files = new Dictionary<string, Action<string>>
        {
            [ModelCode] = path => CopyResource("Medformer.Tracking.Interop.medformer.py", path),
            [Loader] = path => CopyResource("Medformer.Tracking.Interop.safetensors_load.py", path),
            [Readme] = path => File.WriteAllText(path, ReadmeText(source, parameters, head, torchSave)),
        };
        if (head is not null)
        {
            files[HeadWeights] = path => Safetensors.Save(head.Weights, path, new Dictionary<string, string> { ["format"] = "pt" });
            files[HeadDescription] = path => File.WriteAllBytes(path, head.Description);
        }
        if (torchSave)
        {
            // A fine-tuned model's file is FineTuned's state_dict (model.*, head.*); a pretrained one's the Medformer's.
            var entries = head is null ? weights.AsEnumerable()
                : weights.Select(kv => KeyValuePair.Create("model." + kv.Key, kv.Value)).Concat(head.Weights.Select(kv => KeyValuePair.Create("head." + kv.Key, kv.Value)));
            files[TorchFile] = path => TorchSave.Write(path, entries);
        }
        return files;
    }

    static void CopyResource(string name, string path)
    {
        using var stream = typeof(PyTorchExport).Assembly.GetManifestResourceStream(name)
            ?? throw new InvalidOperationException($"the assembly lacks its resource {name}");
        using var file = File.Create(path);
        stream.CopyTo(file);
    }

    static string ReadmeText(string source, long parameters, ExportedHead? head, bool torchSave)
    {
        bool fineTuned = head is { HasTwin: true };
        bool dense = fineTuned && DenseHeads.Contains(head!.Kind);
        string files = $"""
            * `config.json`: the model's hyper-parameters (snake_case keys).
            * `model.safetensors`: the model's weights, float32, contiguous, PyTorch-style names (`blocks.0.attn.qkv.weight`).
            {(head is null ? "" : $"* `head.json`, `head.safetensors`: the fine-tuned {head.Kind} head (kind, task bank, settings, class names) and its weights.\n")}{(torchSave ? $"* `model.pt`: the same weights as `torch.save` writes a state_dict{(head is null ? "" : " (`model.*` and `head.*`, FineTuned's names)")}; `torch.load` reads it.\n" : "")}* `medformer.py`: the model in PyTorch (same modules, same names, same maths as the C# model){(head is null ? "" : ", the heads and `FineTuned`, the model with its head")}.
            * `safetensors_load.py`: a safetensors reader in plain PyTorch, for a PyTorch without the `safetensors` package.
            """;
        string load = fineTuned
            ? $$"""
              import torch
              from safetensors_load import load_file
              from medformer import FineTuned

              model = FineTuned("config.json", "head.json").eval()     # the model and its head
              model.model.load_state_dict(load_file("model.safetensors"), strict=True)
              model.head.load_state_dict(load_file("head.safetensors"), strict=True)
              with torch.no_grad():
              {{Predicts(head!.Kind)}}
              """
            : """
              import torch
              from safetensors_load import load_file
              from medformer import Medformer

              model = Medformer("config.json").eval()                   # builds the modules from the config
              model.load_state_dict(load_file("model.safetensors"), strict=True)
              with torch.no_grad():
                  latents = model(images, [("chest", "xray", "classification")] * images.shape[0])   # [B, latents, dim]
              """;
        string pt = !torchSave ? "" : fineTuned
            ? "\nOr from `model.pt`: `model.load_state_dict(torch.load(\"model.pt\"), strict=True)` after `model = FineTuned(\"config.json\", \"head.json\")`.\n"
            : head is null
                ? "\nOr from `model.pt`: `model.load_state_dict(torch.load(\"model.pt\"), strict=True)`.\n"
                : "\nOr from `model.pt`: `model.load_state_dict({k[6:]: v for k, v in torch.load(\"model.pt\").items() if k.startswith(\"model.\")})`.\n";
        string headNote = head is { HasTwin: false }
            ? $"\nThe {head.Kind} head has no class in `medformer.py` (it holds the built-in heads: {string.Join(", ", TwinnedHeads.Order())}): its weights and settings are here for your own code; the lines above load the model without it.\n"
            : "";
        return $$"""
            # Medformer weights for PyTorch

            Exported by `medformer export` from `{{source}}`: {{parameters:N0}} parameters.

            {{files}}
            ```python
            {{load}}
            ```
            {{pt}}{{headNote}}
            Images are `[B, C, H, W]` or `[B, C, D, H, W]` float32, {{(dense ? "of any size (below)" : "sizes a multiple of the patch size")}}; each sample's
            (organ, modality{{(fineTuned ? "" : ", task")}}) picks its latent banks (unknown names fall back to `other`). `decode(latents,
            position_queries([H, W]))` of the Medformer decodes at any resolution.
            {{(dense ? DenseNote : "")}}

            """;
    }

    const string DenseNote = """

        Images of the training input's shape (`input_shape` in head.json, the crop with `--roi`) are predicted whole,
        any other size by sliding windows of it (overlap 0.25, Gaussian blending), as `medformer predict` does; `keys`
        default to ("other", "other"), predict's for files. `model.outputs(images)` gives the raw outputs (logits or
        images) before the last step.
        """;

    /// <summary>The README's prediction lines for a head kind (indented for the with block).</summary>
    static string Predicts(string kind) => kind switch
    {
        "classification" => """
                probabilities = model(images, [("chest", "xray")] * images.shape[0])   # [B, classes], as medformer predict
            """,
        "segmentation" => """
                mask = model(images)                        # [B, 1, ...] class per pixel (int64), as medformer predict's NAME_mask.nii.gz
                probabilities = model.probabilities(images) # [B, classes, ...] softmax of the blended logits
            """,
        _ => $"""
                restored = model(images)                    # [B, C, ...] images, as medformer predict's NAME_{kind.Replace('-', '_')}.nii.gz
            """,
    };
}
