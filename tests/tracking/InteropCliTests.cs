using System.Text.Json;
using Medformer.Datasets;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
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

    /// <summary>Runs tests/reference/export_check.py on an export holding io.safetensors (x, our output y); its JSON report.</summary>
    JsonElement Check(string exported, Tensor x, Tensor y)
    {
        Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = x, ["y"] = y.detach() }, Path.Combine(exported, "io.safetensors"));
        var check = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "export_check.py"), exported]);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.True(check.ExitCode == 0, check.Stderr);
        return JsonDocument.Parse(check.Stdout).RootElement.Clone();
    }

    [Fact]
    public void AnExportedFolderLoadsInPyTorchAndGivesOurOutputs()
    {
        Seeding.SeedEverything(8);
        string source = Path.Combine(folder, "trained");
        string exported = Path.Combine(folder, "exported");
        using var model = new MedformerModel(MedformerConfig.Tiny with { Repeats = 2 });
        using (no_grad())
            foreach (var parameter in model.parameters()) parameter.normal_();   // banks start at zero: make every weight count
        Checkpoint.Save(model, source);

        var result = Cli("export", source, "--out", exported, "--format", "pt");
        Assert.Equal(0, result.ExitCode);
        Assert.Equal([OutputFolder.MarkerFile, "README.md", "config.json", "medformer.py", "model.pt", "model.safetensors", "safetensors_load.py"],
            Directory.EnumerateFiles(exported).Select(Path.GetFileName).Order());
        Assert.Contains("model.pt for torch.load", result.Stdout);
        Assert.DoesNotContain("from safetensors", File.ReadAllText(Path.Combine(exported, "README.md")).Replace("from safetensors_load", ""));

        using var scope = NewDisposeScope();
        model.eval();
        var x = randn(2, 1, 16, 12);
        LatentKey[] keys = [new("chest", "xray", "classification"), new("chest", "xray", "classification")];   // the README's keys
        var root = Check(exported, x, model.forward(x, keys));
        Assert.Equal("latents", root.GetProperty("variable").GetString());
        Assert.Equal(["torch.float32"], root.GetProperty("dtypes").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(model.state_dict().Count, root.GetProperty("tensors").GetInt32());
        Assert.True(root.GetProperty("readme_error").GetDouble() < 1e-4, root.ToString());
        Assert.Equal("OrderedDict", root.GetProperty("pt_type").GetString());
        Assert.Equal(model.state_dict().Count, root.GetProperty("pt_tensors").GetInt32());
        Assert.Empty(root.GetProperty("pt_missing").EnumerateArray());
        Assert.Empty(root.GetProperty("pt_unexpected").EnumerateArray());
        Assert.True(root.GetProperty("pt_error").GetDouble() < 1e-4, root.ToString());

        // The .pt comes back through our reader as the same weights.
        var again = Cli("import", Path.Combine(exported, "model.pt"), "--config", Path.Combine(exported, "config.json"), "--out", Path.Combine(folder,
            "again"));
        Assert.Equal(0, again.ExitCode);
        using var back = Checkpoint.Load(Path.Combine(folder, "again"));
        var own = back.state_dict();
        foreach (var (name, tensor) in model.state_dict()) Assert.True(tensor.bytes.SequenceEqual(own[name].bytes), name);
    }

    [Theory]
    [InlineData(LabelKind.MultiClass, Pooling.Flatten)]
    [InlineData(LabelKind.Ordinal, Pooling.Query)]
    [InlineData(LabelKind.Binary, Pooling.ClassQueries)]
    [InlineData(LabelKind.MultiLabel, Pooling.Mean)]
    public void AFineTunedModelExportsWithItsHeadAndPredictsAsWeDo(LabelKind type, Pooling pooling)
    {
        Seeding.SeedEverything(9);
        string source = Path.Combine(folder, "tuned");
        string exported = Path.Combine(folder, "exported");
        var config = MedformerConfig.Tiny;
        using var tuner = new FineTuner(new MedformerModel(config), new ClassificationHead(config, type == LabelKind.Binary ? 2 : 4, type, pooling));
        using (no_grad())
        {
            foreach (var parameter in tuner.Model.parameters()) parameter.normal_();
            foreach (var parameter in tuner.Head.parameters()) parameter.normal_(std: 0.05);   // the output layer starts at zero
        }
        tuner.Save(source);

        var result = Cli("export", source, "--out", exported, "--format", "pt");
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("with its classification head", result.Stdout);
        Assert.True(File.Exists(Path.Combine(exported, "head.safetensors")) && File.Exists(Path.Combine(exported, "head.json")));

        using var scope = NewDisposeScope();
        var x = randn(3, 1, 16, 12);
        var metas = Enumerable.Range(0, 3).Select(i => new SampleMeta("input", $"input[{i}]", i, "chest", "xray", Dimensionality.Image, [], [])).ToList();
        var expected = tuner.Predict(x, metas);                                      // what medformer predict writes
        var root = Check(exported, x, expected);
        Assert.Equal("probabilities", root.GetProperty("variable").GetString());
        Assert.Equal(expected.shape, root.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.True(root.GetProperty("readme_error").GetDouble() < 1e-4, root.ToString());
        Assert.Equal(tuner.Model.state_dict().Count + tuner.Head.state_dict().Count, root.GetProperty("pt_tensors").GetInt32());
        Assert.Empty(root.GetProperty("pt_missing").EnumerateArray());
        Assert.Empty(root.GetProperty("pt_unexpected").EnumerateArray());
        Assert.True(root.GetProperty("pt_error").GetDouble() < 1e-4, root.ToString());
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
