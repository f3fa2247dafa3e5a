using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Model;

/// <summary>
/// The tokenizer's convolutional stem (config "stem": "conv"): the patch tokenizer's token grid, PyTorch's weight
/// names, its PyTorch twin in bench/reference/medformer.py within 1e-5, counted FLOPs, and checkpoints, export and
/// import that keep it; a config.json without the key is a patch tokenizer.
/// </summary>
public sealed class ConvStemTests(ITestOutputHelper output) : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-conv-stem-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    static MedformerConfig Conv => MedformerConfig.Tiny with { Stem = "conv", StemChannels = 8 };

    static readonly LatentKey[] Keys = [new("chest", "xray", "classification"), new("chest", "xray", "classification")];

    [Fact]
    public void TheStemGivesThePatchTokenizersGridAndPyTorchsNames()
    {
        using var patch = new MedformerModel(MedformerConfig.Tiny);
        using var conv = new MedformerModel(Conv);
        using var scope = NewDisposeScope();
        foreach (var x in new[] { randn(2, 1, 16, 20), randn([2, 3, 8, 12, 16]) })
        {
            var a = patch.Tokenize(x);
            var b = conv.Tokenize(x);
            Assert.Equal(a.shape, b.shape);
            Assert.Equal(patch.TokenGrid(x.shape), conv.TokenGrid(x.shape));
        }
        var names = conv.state_dict().Keys.ToHashSet();
        foreach (string axes in new[] { "2d", "3d" })
        {
            foreach (int i in new[] { 0, 2, 4 })
            {
                Assert.Contains($"tokenizer_{axes}.stem.{i}.weight", names);
                Assert.Contains($"tokenizer_{axes}.stem.{i}.bias", names);
            }
            Assert.DoesNotContain($"tokenizer_{axes}.proj.weight", names);
            Assert.Contains($"tokenizer_{axes}.proj.weight", patch.state_dict().Keys);
        }
        var state = conv.state_dict();
        Assert.Equal([8L, 3, 3, 3], state["tokenizer_2d.stem.0.weight"].shape);
        Assert.Equal([8L, 8, 3, 3, 3], state["tokenizer_3d.stem.2.weight"].shape);
        Assert.Equal([64L, 8, 4, 4], state["tokenizer_2d.stem.4.weight"].shape);
    }

    [Fact]
    public void AConfigWithoutTheKeyIsAPatchTokenizerAndABadStemIsRefusedByName()
    {
        var json = JsonNode.Parse(MedformerConfig.Tiny.ToJson())!.AsObject();
        Assert.Equal("patch", (string?)json["stem"]);
        json.Remove("stem");
        json.Remove("stem_channels");
        var old = MedformerConfig.FromJson(json.ToJsonString(), "old/config.json");
        Assert.Equal("patch", old.Stem);
        Assert.Equal(MedformerConfig.Tiny.ToJson(), old.ToJson());
        Assert.Equal(Conv.ToJson(), MedformerConfig.FromJson(Conv.ToJson()).ToJson());

        json["stem"] = "pixels";
        var error = Assert.Throws<InvalidDataException>(() => MedformerConfig.FromJson(json.ToJsonString(), "bad/config.json"));
        Assert.Contains("bad/config.json", error.Message);
        Assert.Contains("stem", error.Message);
        Assert.Contains("pixels", error.Message);
        json["stem"] = "conv";
        json["stem_channels"] = 0;
        error = Assert.Throws<InvalidDataException>(() => MedformerConfig.FromJson(json.ToJsonString(), "bad/config.json"));
        Assert.Contains("stem_channels", error.Message);
    }

    [Theory]
    [InlineData(28, 28)]
    [InlineData(8, 16, 12)]
    public void FlopsCountTheStemsConvolutions(params int[] size)
    {
        long[] spatial = [.. size.Select(n => (long)n)];
        var config = Conv with { StemChannels = 16 };
        double pixels = spatial.Aggregate(1L, (a, n) => a * n), kernel = Math.Pow(3, spatial.Length);
        double tokens = pixels / Math.Pow(4, spatial.Length);
        double stem = 2 * pixels * kernel * (3 * 16 + 16 * 16);
        double patchify = 2 * tokens * 16 * Math.Pow(4, spatial.Length) * 64;
        double positions = 2 * tokens * Fourier.Width(spatial.Length, config.FourierBands) * 64;
        var flops = ModelFlops.Forward(config, spatial);
        Assert.Equal(stem + patchify + positions, flops.Tokenizer, 6);
        var patch = ModelFlops.Forward(MedformerConfig.Tiny, spatial);
        Assert.Equal(patch.EncoderCrossAttention, flops.EncoderCrossAttention);
        Assert.Equal(patch.SelfAttention, flops.SelfAttention);
        Assert.True(flops.Tokenizer > patch.Tokenizer);
    }

    [Fact]
    public void OutputsAndGradientsMatchThePyTorchTwin()
    {
        Seeding.SeedEverything(12);
        string dir = Path.Combine(folder, "parity");
        using var report = ParityTests.RunTwin(Conv with { Repeats = 2, CrossAttentionHeads = 2 }, dir, output, out string stdout);
        var root = report.RootElement;
        Assert.Empty(root.GetProperty("missing_in_ours").EnumerateArray());
        Assert.Empty(root.GetProperty("extra_in_ours").EnumerateArray());
        Assert.True(root.GetProperty("grads_compared").GetInt32() > 40);
        Assert.True(root.GetProperty("max_output_error").GetDouble() < 1e-5, "outputs differ: " + stdout);
        Assert.True(root.GetProperty("max_grad_error").GetDouble() < 1e-4, "gradients differ: " + stdout);
    }

    [Fact]
    public void AConvStemModelSavesLoadsExportsAndImports()
    {
        Seeding.SeedEverything(13);
        string source = Path.Combine(folder, "trained"), exported = Path.Combine(folder, "exported"), again = Path.Combine(folder, "again");
        using var model = new MedformerModel(Conv);
        using (no_grad())
            foreach (var parameter in model.parameters()) parameter.normal_(0, 0.2);   // banks start at zero: make every weight count
        model.eval();
        Checkpoint.Save(model, source);
        Assert.Contains("\"stem\": \"conv\"", File.ReadAllText(Path.Combine(source, "config.json")));

        using var scope = NewDisposeScope();
        var x = randn(2, 1, 16, 12);
        var y = model.forward(x, Keys);
        using (var loaded = Checkpoint.Load(source))
        {
            loaded.eval();
            Assert.Equal("conv", loaded.Config.Stem);
            Assert.Equal(y.data<float>().ToArray(), loaded.forward(x, Keys).data<float>().ToArray());
        }

        var env = new Dictionary<string, string> { ["MEDFORMER_HOME"] = Path.Combine(folder, "home"), ["MLFLOW_TRACKING_URI"] = "none" };
        var export = Repo.Run(Repo.Cli, ["export", source, "--out", exported, "--format", "pt"], folder, 120, env);
        output.WriteLine(export.Stdout + export.Stderr);
        Assert.Equal(0, export.ExitCode);
        Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = x, ["y"] = y.detach() }, Path.Combine(exported, "io.safetensors"));
        var check = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "export_check.py"), exported]);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.True(check.ExitCode == 0, check.Stderr);
        var root = JsonDocument.Parse(check.Stdout).RootElement;
        Assert.Equal(model.state_dict().Count, root.GetProperty("tensors").GetInt32());
        Assert.True(root.GetProperty("readme_error").GetDouble() < 1e-5, root.ToString());
        Assert.Empty(root.GetProperty("pt_missing").EnumerateArray());
        Assert.Empty(root.GetProperty("pt_unexpected").EnumerateArray());
        Assert.True(root.GetProperty("pt_error").GetDouble() < 1e-5, root.ToString());

        var import = Repo.Run(Repo.Cli, ["import", Path.Combine(exported, "model.pt"), "--config", Path.Combine(exported, "config.json"), "--out", again],
            folder, 120, env);
        output.WriteLine(import.Stdout + import.Stderr);
        Assert.Equal(0, import.ExitCode);
        using var back = Checkpoint.Load(again);
        var own = back.state_dict();
        foreach (var (name, tensor) in model.state_dict()) Assert.True(tensor.bytes.SequenceEqual(own[name].bytes), name);
    }
}
