using System.Text.Json;
using Medformer.Datasets.Transforms;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Pretrain;

/// <summary>
/// Runs every function of <see cref="Losses"/> on small random inputs in fp64 and fp32, with the gradients of a
/// random weighting of its outputs, and has tests/reference/ssl_losses.py (one process for all of them) recompute
/// each with PyTorch. <see cref="Report"/> holds its errors per case.
/// </summary>
public sealed class LossesParity : IDisposable
{
    public sealed record Case(string Name, string Function, ScalarType Type, string[] Outputs, string[] Grads);

    readonly Dictionary<string, Tensor> io = [];
    readonly List<object> manifest = [];
    readonly Generator generator = new(20_240_613);
    readonly JsonDocument report;

    public List<Case> Cases { get; } = [];
    public JsonElement Report => report.RootElement;
    public string Log { get; }

    public LossesParity()
    {
        using var scope = NewDisposeScope();
        AddCases();
        string dir = Directory.CreateTempSubdirectory("ssl-losses-").FullName;
        try
        {
            Safetensors.Save(io, Path.Combine(dir, "io.safetensors"), new Dictionary<string, string> { ["cases"] = JsonSerializer.Serialize(manifest) });
            var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "ssl_losses.py"), dir]);
            Log = result.Stdout + result.Stderr;
            if (result.ExitCode != 0) throw new InvalidOperationException("ssl_losses.py failed: " + Log);
            report = JsonDocument.Parse(result.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    public void Dispose()
    {
        report.Dispose();
        generator.Dispose();
    }

    void AddCases()
    {
        Both("ntxent", "NtXent", new { temperature = 0.5 }, In(("z1", Randn(6, 5)), ("z2", Randn(6, 5))), ["z1", "z2"],
            x => Loss(Losses.NtXent(x["z1"], x["z2"], 0.5)));
        Both("ntxent_cold", "NtXent", new { temperature = 0.1 }, In(("z1", Randn(4, 3)), ("z2", Randn(4, 3))), ["z1", "z2"],
            x => Loss(Losses.NtXent(x["z1"], x["z2"], 0.1)));
        foreach (int rank in new[] { 0, 1 })
            Both($"ntxent_gathered_rank{rank}", "NtXentGathered", new { temperature = 0.3, rank },
                In(("z1", Randn(3, 4)), ("z2", Randn(3, 4)), ("o1", Randn(3, 4)), ("o2", Randn(3, 4))), ["z1", "z2"],
                x =>
                {
                    // The other rank's rows as a gather would bring them: normalised, and constant here.
                    var other = F.normalize(cat([x["o1"], x["o2"]], 0), dim: -1).detach();
                    return Loss(Losses.NtXent(x["z1"], x["z2"], 0.3, local => rank == 0 ? cat([local, other], 0) : cat([other, local], 0), rank));
                });
        Both("byol", "Byol", new { }, In(("online", Randn(5, 7)), ("target", Randn(5, 7))), ["online", "target"],
            x => Loss(Losses.Byol(x["online"], x["target"])));
        Both("barlow", "BarlowTwins", new { lambd = 0.3 }, In(("z1", Randn(8, 6)), ("z2", Randn(8, 6))), ["z1", "z2"],
            x => Loss(Losses.BarlowTwins(x["z1"], x["z2"], 0.3)));
        // Means far from zero against the spread: what the shifted moments are for.
        Both("barlow_offset", "BarlowTwins", new { lambd = 0.0051 }, In(("z1", Randn(10, 5) * 0.5 + 40), ("z2", Randn(10, 5) * 3 - 25)), ["z1", "z2"],
            x => Loss(Losses.BarlowTwins(x["z1"], x["z2"], 0.0051)));
        foreach (double gamma in new[] { 2.0, 1.5 })
            Both($"ppm_gamma{gamma}", "PixelPropagation", new { gamma }, In(("features", Randn(2, 5, 4)), ("transformed", Randn(2, 5, 3))), ["features",
                "transformed"],
                x => new() { ["y"] = Losses.PixelPropagation(x["features"], x["transformed"], gamma) });
        var positives = rand([3, 4, 6], dtype: ScalarType.Float64, generator: generator).lt(0.3);
        positives[1].fill_(false);   // a sample without positives
        Both("contrast", "PixelContrast", new { }, In(("propagated", Randn(3, 4, 5)), ("target", Randn(3, 6, 5)), ("positives", positives)), ["propagated",
            "target"],
            x => Loss(Losses.PixelContrast(x["propagated"], x["target"], x["positives"])));
        Both("contrast_none", "PixelContrast", new { }, In(("propagated", Randn(2, 3, 4)), ("target", Randn(2, 3, 4)), ("positives", zeros([2, 3, 3],
            dtype: ScalarType.Bool))), ["propagated", "target"],
            x => Loss(Losses.PixelContrast(x["propagated"], x["target"], x["positives"])));
        Both("pairs2d", "PositivePairs", new { threshold = 1.5 }, In(("coordinates1", Rand(2, 2, 9) * 4), ("coordinates2", Rand(2, 2, 12) * 4)), [],
            x => new() { ["positives"] = PixelPairs.PositiveBatch(x["coordinates1"], x["coordinates2"], 1.5) });
        Both("pairs3d", "PositivePairs", new { threshold = 2.5 }, In(("coordinates1", Rand(2, 3, 8) * 5), ("coordinates2", Rand(2, 3, 8) * 5)), [],
            x => new() { ["positives"] = PixelPairs.PositiveBatch(x["coordinates1"], x["coordinates2"], 2.5) });
        Both("patchify2d", "Patchify", new { patch = 4 }, In(("images", Randn(2, 3, 8, 12))), ["images"],
            x => new() { ["patches"] = Losses.Patchify(x["images"], 4) });
        Both("patchify3d", "Patchify", new { patch = 2 }, In(("images", Randn(2, 2, 4, 8, 4))), ["images"],
            x => new() { ["patches"] = Losses.Patchify(x["images"], 2) });
        long[] shape2 = [2, 3, 8, 12], shape3 = [2, 2, 4, 8, 4];
        Both("unpatchify2d", "Unpatchify", new { image_shape = shape2, patch = 4 }, In(("patches", Randn(2, 6, 48))), ["patches"],
            x => new() { ["images"] = Losses.Unpatchify(x["patches"], shape2, 4) });
        Both("unpatchify3d", "Unpatchify", new { image_shape = shape3, patch = 2 }, In(("patches", Randn(2, 16, 16))), ["patches"],
            x => new() { ["images"] = Losses.Unpatchify(x["patches"], shape3, 2) });
        var mask = rand([2, 6], dtype: ScalarType.Float64, generator: generator).lt(0.5);
        mask[0, 0].fill_(true);
        foreach (bool normalize in new[] { true, false })
            Both($"mae_norm{normalize}", "MaskedReconstruction", new { normalize_pixels = normalize },
                In(("predicted", Randn(2, 6, 12)), ("target", Randn(2, 6, 12) * 2 + 1), ("mask", mask)), ["predicted", "target"],
                x => Loss(Losses.MaskedReconstruction(x["predicted"], x["target"], x["mask"], normalize)));
        Both("mae_none_masked", "MaskedReconstruction", new { normalize_pixels = true },
            In(("predicted", Randn(2, 6, 12)), ("target", Randn(2, 6, 12)), ("mask", zeros([2, 6], dtype: ScalarType.Bool))), ["predicted", "target"],
            x => Loss(Losses.MaskedReconstruction(x["predicted"], x["target"], x["mask"])));
        Both("keep_visible", "KeepVisible", new { }, In(("tokens", Randn(3, 8, 4)), ("mask", Losses.RandomMask(3, 8, 0.5, generator))), ["tokens"],
            x =>
            {
                var (visible, index) = Losses.KeepVisible(x["tokens"], x["mask"]);
                return new() { ["visible"] = visible, ["index"] = index };
            });
    }

    Tensor Randn(params long[] shape) => randn(shape, dtype: ScalarType.Float64, generator: generator);

    Tensor Rand(params long[] shape) => rand(shape, dtype: ScalarType.Float64, generator: generator);

    static Dictionary<string, Tensor> In(params (string Name, Tensor Value)[] inputs) => inputs.ToDictionary(p => p.Name, p => p.Value);

    static Dictionary<string, Tensor> Loss(Tensor loss) => new() { ["loss"] = loss };

    // The same case in fp64 (inputs as drawn) and fp32 (floating inputs rounded).
    void Both(string name, string function, object args, Dictionary<string, Tensor> inputs, string[] grads, Func<Dictionary<string, Tensor>, Dictionary<string,
        Tensor>> run)
    {
        foreach (var type in new[] { ScalarType.Float64, ScalarType.Float32 })
        {
            var typed = inputs.ToDictionary(p => p.Key, p => p.Value.is_floating_point() ? p.Value.to(type) : p.Value);
            Add($"{name}.{(type == ScalarType.Float64 ? "f64" : "f32")}", function, type, args, typed, grads, run);
        }
    }

    void Add(string name, string function, ScalarType type, object args, Dictionary<string, Tensor> inputs, string[] grads, Func<Dictionary<string, Tensor>,
        Dictionary<string, Tensor>> run)
    {
        var leaves = inputs.ToDictionary(p => p.Key, p => grads.Contains(p.Key) ? p.Value.detach().clone().requires_grad_() : p.Value);
        var outputs = run(leaves);
        Tensor? objective = null;
        foreach (var (key, value) in outputs)
        {
            io[$"{name}/out/{key}"] = value.detach().contiguous();
            if (!value.is_floating_point()) continue;
            var weight = randn(value.shape, dtype: ScalarType.Float64, generator: generator).to(value.dtype);
            io[$"{name}/w/{key}"] = weight;
            var term = (value * weight).sum();
            objective = objective is null ? term : objective + term;
        }
        if (grads.Length > 0)
        {
            objective!.backward();
            foreach (string x in grads) io[$"{name}/grad/{x}"] = leaves[x].grad!.detach().clone();
        }
        foreach (var (key, value) in inputs) io[$"{name}/in/{key}"] = value.contiguous();
        manifest.Add(new { name, fn = function, args, inputs = inputs.Keys.ToArray(), grads, outputs = outputs.Keys.ToArray() });
        Cases.Add(new Case(name, function, type, outputs.Keys.ToArray(), grads));
    }
}
