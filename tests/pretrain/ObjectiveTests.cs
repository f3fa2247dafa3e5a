using Medformer.Training;
using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Pretrain;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Pretrain;

/// <summary>Each objective on a tiny batch, 2D and 3D: its loss at initialisation, where its gradient goes, its determinism.</summary>
public sealed class ObjectiveTests
{
    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static Objective Create(string name) => name switch
    {
        "inpainting" => new Inpainting(Config, normalizePixels: true),
        "rotation" => new Rotation(Config.Dim),
        "jigsaw" => new Jigsaw(Config.Dim),
        "simclr" => new SimClr(Config.Dim, projectionDim: 16),
        "byol" => new Byol(Config.Dim, projectionDim: 16),
        "barlow" => new BarlowTwins(Config.Dim, projectionDim: 16),
        "pixpro" => new PixPro(Config.Dim, projectionDim: 16),
        _ => throw new ArgumentException(name),
    };

    /// <summary>Two views of 6 samples: the second shifted by a pixel, with coordinates that say so.</summary>
    static Batch MakeBatch(bool volume, int count = 6)
    {
        long[] spatial = volume ? [8, 8, 8] : [16, 16];
        var images = randn([count, 1, .. spatial]);
        var grids = meshgrid(spatial.Select(n => arange(n, dtype: ScalarType.Float32)).ToArray(), indexing: "ij");
        var coordinates = stack(grids).unsqueeze(0).expand([count, spatial.Length, .. spatial]).contiguous();
        var shifted = images.roll(1, -1);
        var shiftedCoordinates = coordinates.roll(1, -1);
        var metas = Enumerable.Range(0, count).Select(i => new SampleMeta("test", $"test[{i}]", i, i % 2 == 0 ? "chest" : "brain",
            "ct", volume ? Dimensionality.Volume : Dimensionality.Image, [.. spatial.Select(_ => 1.0)], [])).ToList();
        return new Batch(0, [new BatchView(images, null, coordinates), new BatchView(shifted, null, shiftedCoordinates)], metas);
    }

    static (Pretraining Task, Objective Objective) Task(string name)
    {
        Seeding.SeedEverything(5);
        var objective = Create(name);
        var task = new Pretraining(new MedformerModel(Config), [(objective, 1.0)]);
        task.Prepare(ScalarType.Float32, CPU);
        return (task, objective);
    }

    static double Loss(Pretraining task, Batch batch, long seed, bool backward = false)
    {
        using var scope = NewDisposeScope();
        using var generator = new Generator((ulong)seed);
        var (loss, parts) = task.Loss(batch, new StepContext(0, generator, x => x.alias()));
        Assert.Equal(0, loss.dim());
        Assert.Equal(ScalarType.Float32, loss.dtype);
        if (backward) loss.backward();
        return loss.item<float>();
    }

    [Theory]
    [InlineData("inpainting", false)]
    [InlineData("inpainting", true)]
    [InlineData("rotation", false)]
    [InlineData("rotation", true)]
    [InlineData("jigsaw", false)]
    [InlineData("jigsaw", true)]
    [InlineData("simclr", false)]
    [InlineData("simclr", true)]
    [InlineData("byol", false)]
    [InlineData("byol", true)]
    [InlineData("barlow", false)]
    [InlineData("barlow", true)]
    [InlineData("pixpro", false)]
    [InlineData("pixpro", true)]
    public void LossIsFiniteDeterministicAndTrainsWhatItShould(string name, bool volume)
    {
        var (task, objective) = Task(name);
        using (task)
        using (var batch = MakeBatch(volume))
        {
            double first = Loss(task, batch, seed: 1, backward: true);
            Assert.True(double.IsFinite(first), $"{name}: loss {first}");
            Assert.Equal(first, Loss(task, batch, seed: 1), 5);
            var grads = task.Module.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
            string bank = $"model.latents.task.{objective.Task}";
            Assert.True(grads[bank] is { } g && g.abs().sum().item<float>() > 0, $"{name}: no gradient reached its task bank");
            Assert.Null(grads["model.latents.task.other"]);
            Assert.True(grads["model.encoder.attn.q.weight"]!.abs().sum().item<float>() > 0, $"{name}: no gradient reached the encoder");
            Assert.Contains(grads, p => p.Key.StartsWith($"objectives.{objective.Task}.", StringComparison.Ordinal) && p.Value is not null);
            if (task.Target is { } target)
                Assert.All(target.Model.parameters(), p => Assert.Null(p.grad));
        }
    }

    [Theory]
    [InlineData("rotation", 4)]
    [InlineData("jigsaw", 24)]
    public void PretextClassifiersStartAtChance(string name, int classes)
    {
        var (task, _) = Task(name);
        using (task)
        using (var batch = MakeBatch(volume: false, count: 32))
            Assert.Equal(Math.Log(classes), Loss(task, batch, seed: 2), 1);
    }

    [Fact]
    public void InpaintingWithAZeroHeadScoresTheNormalisedTargetsVariance()
    {
        // Predicting 0 for per-patch standardised pixels costs mean(z²) = (P − 1)/P per patch (unbiased variance).
        var (task, objective) = Task("inpainting");
        using (task)
        using (var batch = MakeBatch(volume: false))
        {
            using (torch.no_grad())
                foreach (var (pname, p) in objective.named_parameters())
                    if (pname.StartsWith("pixels_2d", StringComparison.Ordinal)) p.zero_();
            int pixels = Config.PatchSize2d * Config.PatchSize2d * Config.InChannels;
            Assert.Equal((pixels - 1.0) / pixels, Loss(task, batch, seed: 3), 3);
        }
    }

    [Fact]
    public void TheMomentumTargetFollowsTheOnlineNetwork()
    {
        var (task, _) = Task("byol");
        using (task)
        {
            var online = task.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            var target = task.Target!.Model.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            Assert.True(online["blocks.0.attn.qkv.weight"].eq(target["blocks.0.attn.qkv.weight"]).all().item<bool>());
            using (torch.no_grad()) online["blocks.0.attn.qkv.weight"].add_(1.0);
            task.AfterStep(0, 100);  // momentum 0.99 at step 0: the target moves 1% of the way
            var moved = (target["blocks.0.attn.qkv.weight"] - (online["blocks.0.attn.qkv.weight"] - 1.0)).mean().item<float>();
            Assert.Equal(0.01, moved, 4);
        }
    }

    [Fact]
    public void ObjectivesThatNeedTwoViewsSayWhenTheyGetOne()
    {
        var (task, _) = Task("simclr");
        using (task)
        using (var full = MakeBatch(volume: false))
        {
            var single = full with { Views = [full.Views[0]] };
            var error = Assert.Throws<ArgumentException>(() => Loss(task, single, seed: 1));
            Assert.Contains("two views", error.Message);
        }
    }
}
