using System.Text.Json;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Tracking;

/// <summary>
/// <c>medformer export</c> and <c>import</c> end to end with PyTorch 1.13: an exported folder loads in PyTorch with the
/// medformer.py it ships and gives our outputs; the PyTorch twin's weights, saved by torch.save in a Lightning-style
/// checkpoint with DataParallel's prefix, import into the same values.
/// </summary>
public sealed class InteropCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-interop-cli-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    Repo.Result Cli(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, folder, 120, new Dictionary<string, string> { ["MEDFORMER_HOME"] = Path.Combine(folder, "home") });
        output.WriteLine($"medformer {string.Join(' ', args)} -> {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result;
    }

    [Fact]
    public void AnExportedFolderLoadsInPyTorchAndGivesOurOutputs()
    {
        Seeding.SeedEverything(8);
        string source = Path.Combine(folder, "trained");
        string exported = Path.Combine(folder, "exported");
        using var model = new Medformer(MedformerConfig.Tiny with { Repeats = 2 });
        using (no_grad())
            foreach (var parameter in model.parameters()) parameter.normal_();   // banks start at zero: make every weight count
        Checkpoint.Save(model, source);

        var result = Cli("export", source, "--out", exported);
        Assert.Equal(0, result.ExitCode);
        Assert.Equal([OutputFolder.MarkerFile, "README.md", "config.json", "medformer.py", "model.safetensors"], Directory.EnumerateFiles(exported).Select(Path.GetFileName).Order());

        using var scope = NewDisposeScope();
        model.eval();
        LatentKey[] keys = [new("chest", "xray", "classification"), new("unknown", "ct", "simclr")];
        var x = randn(2, 1, 16, 12);
        var z = model.forward(x, keys);
        Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = x, ["z"] = z.detach() }, Path.Combine(exported, "io.safetensors"),
            new Dictionary<string, string> { ["keys"] = JsonSerializer.Serialize(keys.Select(k => new[] { k.Organ, k.Modality, k.Task })) });
        var check = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "export_check.py"), exported]);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.Equal(0, check.ExitCode);
        using var report = JsonDocument.Parse(check.Stdout);
        var root = report.RootElement;
        Assert.Equal(["F32"], root.GetProperty("dtypes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(model.state_dict().Count, root.GetProperty("tensors").GetInt32());
        Assert.Empty(root.GetProperty("missing").EnumerateArray());
        Assert.Empty(root.GetProperty("unexpected").EnumerateArray());
        Assert.True(root.GetProperty("max_error").GetDouble() < 1e-4, check.Stdout);
    }

    [Fact]
    public void ExportTakesARunFolderAndRefusesWhatIsNoCheckpoint()
    {
        Directory.CreateDirectory(Path.Combine(folder, "empty"));
        var result = Cli("export", Path.Combine(folder, "empty"), "--out", Path.Combine(folder, "out"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("not a Medformer checkpoint (no config.json)", result.Stderr);
        Assert.False(Directory.Exists(Path.Combine(folder, "out")));
    }

    [Fact]
    public void ThePyTorchTwinsWeightsImportIntoTheSameValues()
    {
        File.WriteAllText(Path.Combine(folder, "config.json"), MedformerConfig.Tiny.ToJson());
        var made = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "torch_state_dicts.py"), "model", folder]);
        Assert.True(made.ExitCode == 0, made.Stderr);
        string imported = Path.Combine(folder, "imported");

        var result = Cli("import", Path.Combine(folder, "twin.ckpt"), "--config", "tiny", "--out", imported);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("torch.save (zip)", result.Stdout);
        Assert.Contains("in its \"state_dict\"", result.Stdout);
        Assert.Contains("stripped the prefix 'module.'", result.Stdout);
        Assert.Contains("1 tensor(s) of the file have no place in the model, skipped: module.head.weight", result.Stdout);

        using var model = Checkpoint.Load(imported);
        var expected = Safetensors.Load(Path.Combine(folder, "twin.safetensors"));
        var own = model.state_dict();
        Assert.Equal(expected.Keys.Order(), own.Keys.Order());
        foreach (var (name, tensor) in expected)
        {
            Assert.True(tensor.bytes.SequenceEqual(own[name].contiguous().bytes), $"{name} differs");
            tensor.Dispose();
        }

        var strict = Cli("import", Path.Combine(folder, "twin.ckpt"), "--config", "tiny", "--out", imported, "--strict");
        Assert.Equal(1, strict.ExitCode);
        Assert.Contains("--strict: the file has tensors the model does not", strict.Stderr);
    }

    [Fact]
    public void AFileThatDoesNotFitTheConfigIsRefusedNamingTheTensors()
    {
        File.WriteAllText(Path.Combine(folder, "config.json"), MedformerConfig.Tiny.ToJson());
        var made = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "torch_state_dicts.py"), "model", folder]);
        Assert.True(made.ExitCode == 0, made.Stderr);
        var result = Cli("import", Path.Combine(folder, "twin.ckpt"), "--config", "small", "--out", Path.Combine(folder, "no"));
        Assert.Equal(1, result.ExitCode);
        Assert.Contains("does not fit the config", result.Stderr);
        Assert.Contains("module.tokenizer_2d.proj.weight: [64, 3, 4, 4] in the file, [256, 3, 4, 4] in the model", result.Stderr);
        Assert.False(Directory.Exists(Path.Combine(folder, "no")));

        var bad = Cli("import", Path.Combine(folder, "twin.ckpt"), "--config", "huge", "--out", Path.Combine(folder, "no"));
        Assert.Equal(2, bad.ExitCode);
        File.WriteAllBytes(Path.Combine(folder, "evil.pt"), [0x80, 2, .. "cos\nsystem\n"u8, 0x8c, 2, .. "id"u8, 0x85, (byte)'R', (byte)'.']);
        var evil = Cli("import", Path.Combine(folder, "evil.pt"), "--config", "tiny", "--out", Path.Combine(folder, "no"));
        Assert.Equal(1, evil.ExitCode);
        Assert.Contains("the pickle asks for os.system, which a state_dict never holds; refused", evil.Stderr);
    }
}
