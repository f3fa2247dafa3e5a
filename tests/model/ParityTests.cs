using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Model;

/// <summary>Our model and its PyTorch twin, given the same weights and inputs, agree on outputs and gradients.</summary>
public sealed class ParityTests(ITestOutputHelper output)
{
    [Fact]
    public void OutputsAndGradientsMatchThePyTorchTwin()
    {
        Seeding.SeedEverything(11);
        string dir = Directory.CreateTempSubdirectory("medformer-parity-").FullName;
        try
        {
            using var report = RunTwin(MedformerConfig.Tiny with { Repeats = 2, CrossAttentionHeads = 2 }, dir, output, out string stdout);
            var root = report.RootElement;
            Assert.Empty(root.GetProperty("missing_in_ours").EnumerateArray());
            Assert.Empty(root.GetProperty("extra_in_ours").EnumerateArray());
            Assert.True(root.GetProperty("grads_compared").GetInt32() > 40);
            Assert.True(root.GetProperty("max_output_error").GetDouble() < 1e-4, "outputs differ: " + stdout);
            Assert.True(root.GetProperty("max_grad_error").GetDouble() < 1e-4, "gradients differ: " + stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// A model of <paramref name="config"/> on 2D and 3D batches with mixed latent keys and a position decode, its
    /// weights, inputs, outputs and gradients saved in <paramref name="dir"/>, and the PyTorch twin's report on them
    /// (tests/reference/medformer_parity.py): keys missing on either side, outputs' and gradients' largest errors.
    /// </summary>
    internal static JsonDocument RunTwin(MedformerConfig config, string dir, ITestOutputHelper output, out string stdout)
    {
        using var model = new MedformerModel(config);
        using var scope = NewDisposeScope();
        LatentKey[] keys2 = [new("chest", "xray", "rotation"), new("brain", "mri", "rotation"), new("unknown", "ct", "simclr")];
        LatentKey[] keys3 = [new("lung", "ct", "inpainting"), new("kidney", "mri", "inpainting")];
        long[] querySize = [6, 10];
        var x2 = randn(3, 1, 16, 20);
        var x3 = randn([2, 3, 8, 8, 12]);
        var z2 = model.forward(x2, keys2);
        var z3 = model.forward(x3, keys3);
        var decoded = model.Decode(z2, model.PositionQueries(querySize));
        var (w2, w3, w4) = (randn_like(z2), randn_like(z3), randn_like(decoded));
        ((z2 * w2).sum() + (z3 * w3).sum() + (decoded * w4).sum()).backward();

        Checkpoint.Save(model, dir);
        var io = new Dictionary<string, Tensor>
        {
            ["x2"] = x2, ["x3"] = x3, ["w2"] = w2, ["w3"] = w3, ["w4"] = w4,
            ["z2"] = z2.detach(), ["z3"] = z3.detach(), ["out"] = decoded.detach(),
        };
        foreach (var (name, parameter) in model.named_parameters())
            if (parameter.grad is { } grad) io["grad." + name] = grad;
        var meta = new Dictionary<string, string>
        {
            ["keys2"] = JsonSerializer.Serialize(keys2.Select(k => new[] { k.Organ, k.Modality, k.Task })),
            ["keys3"] = JsonSerializer.Serialize(keys3.Select(k => new[] { k.Organ, k.Modality, k.Task })),
            ["query_size"] = JsonSerializer.Serialize(querySize),
        };
        Safetensors.Save(io, Path.Combine(dir, "io.safetensors"), meta);

        var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "medformer_parity.py"), dir]);
        output.WriteLine(result.Stdout + result.Stderr);
        Assert.Equal(0, result.ExitCode);
        stdout = result.Stdout;
        return JsonDocument.Parse(result.Stdout);
    }
}
