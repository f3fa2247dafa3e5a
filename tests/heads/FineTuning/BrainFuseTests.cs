using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Medformer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Heads;

/// <summary>
/// BrainFuse in fine-tuning (`FineTuneOptions.BrainFuse`): mixes and combined targets by hand, the heads' soft losses,
/// the consistency term's stop-gradient, training in 2D and 3D with classification and segmentation heads, DBA,
/// reproducible and exactly resumable draws, and refusals naming --brainfuse.
/// </summary>
public sealed class BrainFuseTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-brainfuse-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    static SampleMeta Meta(int index, params long[] labels) =>
        new("toy", $"toy[{index}]", index, "other", "other", Dimensionality.Image, [1, 1], labels);

    static float[] Floats(Tensor t) => t.detach().cpu().to(ScalarType.Float32).flatten().data<float>().ToArray();

    static void Close(Tensor expected, Tensor actual, double tolerance = 1e-5)
    {
        Assert.Equal(expected.shape, actual.shape);
        var (e, a) = (Floats(expected), Floats(actual));
        for (int i = 0; i < e.Length; i++) Assert.True(Math.Abs(e[i] - a[i]) <= tolerance * (1 + Math.Abs(e[i])), $"[{i}]: expected {e[i]}, got {a[i]}");
    }

    [Fact]
    public void MixesAndCombinedTargetsAreTheWeightedSumsOfTheirParts()
    {
        using var scope = NewDisposeScope();
        var images = arange(4 * 1 * 4 * 4, dtype: ScalarType.Float32).view(4, 1, 4, 4);
        SampleMeta[] metas = [Meta(0, 0), Meta(1, 2), Meta(2, 1), Meta(3, 2)];
        using var generator = new Generator(5);
        using var mixes = BrainFuseBatch.Draw(new BrainFuse(Alpha: 1), images, metas, parts: 3, share: 0.5, generator, "--brainfuse");
        Assert.Equal([0L, 1L], mixes.Rows);                                    // round(0.5 · 4) mixes, in the first rows
        Assert.All(mixes.Parts, p => Assert.Equal(3, p.Distinct().Count()));
        Assert.Equal([2L, 3L], mixes.Weights.shape);
        Close(ones(2), mixes.Weights.sum([1]));

        var mixed = mixes.MixImages(images);
        var labels = F.one_hot(tensor(new long[] { 0, 2, 1, 2 }), 3).to(ScalarType.Float32);
        var combined = mixes.Combine(labels);
        for (int m = 0; m < 2; m++)
        {
            var w = mixes.Weights[m].data<float>().ToArray();
            var byHand = zeros(1, 4, 4);
            var target = zeros(3);
            for (int k = 0; k < 3; k++)
            {
                byHand += images[mixes.Parts[m][k]] * w[k];
                target[metas[(int)mixes.Parts[m][k]].Labels[0]] += w[k];
            }
            Close(byHand, mixed[m]);
            Close(target, combined[m]);
        }
        Close(images[2..], mixed[2..], 0);                                      // rows that are not mixes stay as they were

        // The same generator state draws the same mixes (what a resumed step relies on).
        using var again = new Generator(5);
        using var same = BrainFuseBatch.Draw(new BrainFuse(Alpha: 1), images, metas, 3, 0.5, again, "--brainfuse");
        Assert.Equal(mixes.Parts, same.Parts);
        Close(mixes.Weights, same.Weights, 0);
    }

    [Fact]
    public void SmoothMapsMixDenseTargetsPixelByPixelAndLabelsByTheirMeans()
    {
        using var scope = NewDisposeScope();
        var images = randn(3, 1, 6, 6);
        var masks = randint(0, 3, [3, 6, 6]);
        var oneHot = F.one_hot(masks, 3).movedim([-1L], [1L]).to(ScalarType.Float32);     // [3,3,6,6]
        var labels = F.one_hot(tensor(new long[] { 0, 1, 2 }), 3).to(ScalarType.Float32);
        using var generator = new Generator(1);
        using var mixes = BrainFuseBatch.Draw(new BrainFuse(Alpha: 0.5, Weights: MixWeights.Spatial, ControlGrid: [3]), images, [Meta(0), Meta(1), Meta(2)], 2,
            1.0, generator, "x");
        Assert.Equal([3L, 2L, 6L, 6L], mixes.Weights.shape);
        Close(ones(3, 6, 6), mixes.Weights.sum([1]));
        var dense = mixes.Combine(oneHot);
        var soft = mixes.Combine(labels);
        for (int m = 0; m < 3; m++)
        {
            var (a, b) = (mixes.Parts[m][0], mixes.Parts[m][1]);
            var w = mixes.Weights[m];
            Close(oneHot[a] * w[0].unsqueeze(0) + oneHot[b] * w[1].unsqueeze(0), dense[m]);
            Close(labels[a] * w[0].mean() + labels[b] * w[1].mean(), soft[m]);
            Close(images[a] * w[0] + images[b] * w[1], mixes.MixImages(images)[m]);
        }
        Close(ones(3, 6, 6), dense.sum([1]));                                   // still a distribution at every pixel
    }

    [Theory]
    [InlineData(LabelKind.MultiClass, 0.0)]
    [InlineData(LabelKind.MultiClass, 0.1)]
    [InlineData(LabelKind.MultiLabel, 0.0)]
    [InlineData(LabelKind.Binary, 0.0)]
    [InlineData(LabelKind.Ordinal, 0.0)]
    public void ClassificationSoftLossesAreTheHardOnesOnOneHotTargetsAndCrossEntropyByHand(LabelKind type, double smoothing)
    {
        using var scope = NewDisposeScope();
        int classes = type == LabelKind.Binary ? 2 : 3;
        using var head = new ClassificationHead(Config, classes, type, labelSmoothing: smoothing);
        Seeding.SeedEverything(3);
        var outputs = randn(4, head.Outputs);
        long[][] labels = type == LabelKind.MultiLabel ? [[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]] : [[0], [1], [classes - 1], [1]];
        var batch = new Batch(0, [new BatchView(zeros(4, 1, 4, 4), null, null)], [.. labels.Select((l, i) => Meta(i, l))]);
        var targets = head.SoftTargets(batch, CPU);
        Assert.Equal([4L, classes], targets.shape);
        Close(head.Losses(outputs, batch), head.SoftLosses(outputs, targets));
        if (type != LabelKind.MultiClass) return;
        // A mixed target by hand: t = 0.3·e0 + 0.7·e2 (smoothed toward 1/K as labels, not as predictions).
        var t = tensor(new float[] { 0.3f, 0, 0.7f }).expand(4, 3);
        var smoothed = t * (1 - smoothing) + smoothing / 3;
        Close(-(smoothed * outputs.log_softmax(1)).sum([1]), head.SoftLosses(outputs, t));
        Close(-(t * outputs.log_softmax(1)).sum([1]), head.SoftLosses(outputs, t, labels: false));
    }

    [Fact]
    public void SegmentationSoftLossIsDiceCeOnOneHotMapsAndSoftDiceByHand()
    {
        using var scope = NewDisposeScope();
        using var head = new SegmentationHead(Config, classes: 3, Dimensionality.Volume);
        Seeding.SeedEverything(4);
        var logits = randn([2, 3, 2, 3, 3]);
        var masks = randint(0, 3, [2, 1, 2, 3, 3]);
        var metas = new[] { Meta(0) with { Dimensionality = Dimensionality.Volume }, Meta(1) with { Dimensionality = Dimensionality.Volume } };
        var batch = new Batch(0, [new BatchView(zeros([2, 1, 2, 3, 3]), masks, null)], metas);
        var targets = head.SoftTargets(batch, CPU);
        Assert.Equal([2L, 3L, 2L, 3L, 3L], targets.shape);
        Close(head.Losses(logits, batch), head.SoftLosses(logits, targets));
        // Soft maps by hand: 1 − (2Σpt + ε)/(Σp + Σt + ε) per class, averaged, plus −Σ t log p averaged over voxels.
        var soft = rand([2, 3, 2, 3, 3]);
        soft /= soft.sum([1], keepdim: true);
        var p = logits.softmax(1);
        long[] axes = [2, 3, 4];
        var dice = 1 - (2 * (p * soft).sum(axes) + 1e-5) / (p.sum(axes) + soft.sum(axes) + 1e-5);
        var ce = -(soft * logits.log_softmax(1)).sum([1]).flatten(1).mean([1]);
        Close(dice.mean([1]) + ce, head.SoftLosses(logits, soft));
    }

    [Fact]
    public void TheConsistencyTargetIsDetachedAndTheLossIsTheOneByHand()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(2);
        using var head = new ClassificationHead(Config, 3);
        var layer = nn.Linear(16, 3);
        var gradEnabled = new List<bool>();
        Tensor Outputs(Tensor images, IReadOnlyList<SampleMeta> metas)
        {
            gradEnabled.Add(is_grad_enabled());
            return layer.call(images.flatten(1));
        }
        var images = randn(6, 1, 4, 4);
        var metas = Enumerable.Range(0, 6).Select(i => Meta(i, i % 3)).ToArray();
        var batch = new Batch(0, [new BatchView(images, null, null)], metas);
        var options = new BrainFuseOptions { Parts = 2, Weights = MixWeights.Dirichlet, Share = 0.5, Consistency = 0.7 };
        using var generator = new Generator(9);
        var (losses, parts) = BrainFuseMixing.Losses(options, head, batch, new StepContext(0, generator, x => x.alias()), Outputs, CPU);
        Assert.Equal([true, false], gradEnabled);                                // the parts' forward runs without gradient
        Assert.Equal([6L], losses.shape);
        Assert.Contains("consistency", parts.Keys);

        // By hand, from the same draws: mixes' rows take soft CE to the mixed labels + λ·soft CE to the mixed predictions.
        using var again = new Generator(9);
        using var mixes = BrainFuseBatch.Draw(options.Mixer, images, metas, 2, 0.5, again, "--brainfuse");
        var logits = layer.call(mixes.MixImages(images).flatten(1));
        var predictions = layer.call(images.flatten(1)).softmax(1).detach();
        var labels = F.one_hot(tensor(metas.Select(m => m.Labels[0]).ToArray()), 3).to(ScalarType.Float32);
        var rows = tensor(mixes.Rows);
        var mixLogits = logits.index_select(0, rows).log_softmax(1);
        var expectedMix = -(mixes.Combine(labels) * mixLogits).sum([1]) - 0.7 * (mixes.Combine(predictions) * mixLogits).sum([1]);
        var expected = F.cross_entropy(logits, tensor(metas.Select(m => m.Labels[0]).ToArray()), reduction: nn.Reduction.None).index_copy(0, rows, expectedMix);
        Close(expected, losses);

        // Gradients: exactly those of the by-hand loss whose targets are constants.
        var gradient = autograd.grad([losses.sum()], [layer.weight!])[0];
        var byHand = autograd.grad([expected.sum()], [layer.weight!])[0];
        Close(byHand, gradient, 1e-4);
        var target = BrainFuseMixing.PartsPrediction(mixes, head, batch, new StepContext(0, new Generator(1), x => x.alias()), Outputs, CPU);
        Assert.False(target.requires_grad);
    }

    static FineTuneOptions Quick(long steps, BrainFuseOptions? brainFuse, string? output = null) => new()
    {
        MaxSteps = steps, BatchSize = 16, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32, LogEvery = 5, BrainFuse = brainFuse,
            OutputDirectory = output,
    };

    static Tensor Weights(FineTuner tuner) => cat([.. tuner.Model.parameters().Select(p => p.detach().flatten())]);

    [Fact]
    public void AClassifierLearnsFromMixesReproduciblyAndTheMixesChangeTraining()
    {
        using var train = ClassificationHeadTests.Squares(96, 1, LabelKind.MultiClass);
        using var test = ClassificationHeadTests.Squares(48, 2, LabelKind.MultiClass);
        var fuse = new BrainFuseOptions { Parts = 2, Share = 0.5, Consistency = 0.5, Grid = 3 };
        (FineTuner, FineTuneResult) Tune(long steps, BrainFuseOptions? options, ICorpus? validation = null)
        {
            Seeding.SeedEverything(0);
            var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
            return (tuner, tuner.Fit(train, Quick(steps, options), validation));
        }
        var (learned, result) = Tune(120, fuse, test);
        using (learned)
        {
            Assert.True(result.Validation!["accuracy"] > 0.8, $"accuracy {result.Validation["accuracy"]}");
            Assert.Contains("brainfuse", result.Training.History[^1].Parts.Keys);
            Assert.Contains("consistency", result.Training.History[^1].Parts.Keys);
        }
        var (a, _) = Tune(8, fuse);
        var (b, _) = Tune(8, fuse);
        var (plain, _) = Tune(8, null);
        var (raw, _) = Tune(8, fuse with { Weights = MixWeights.Dirichlet });
        using (a)
        using (b)
        using (plain)
        using (raw)
        {
            Assert.True(Weights(a).eq(Weights(b)).all().item<bool>(), "the same seed draws the same mixes");
            Assert.False(Weights(a).allclose(Weights(plain)), "the mixes change what the steps do");
            Assert.False(Weights(a).allclose(Weights(raw)), "smooth maps and one weight per part mix differently");
        }
    }

    [Fact]
    public void SegmentationTrainsOnMixedVolumesWithConsistency()
    {
        var spec = new PhantomSpec(Dimensionality.Volume, 16, 24, 4, 4);
        using var train = Phantom.Open(spec, "train", Path.Combine(Repo.TestHome, "phantom-brainfuse"));
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2, Dimensionality.Volume));
        var result = tuner.Fit(train, Quick(6, new BrainFuseOptions { Parts = 3, Consistency = 1, Grid = 2 }) with { BatchSize = 4, LogEvery = 3 }).Training;
        Assert.Equal(6, result.Steps);
        Assert.All(result.History, h => Assert.True(double.IsFinite(h.Loss) && h.Parts["consistency"] >= 0, $"loss {h.Loss}"));
    }

    [Theory]
    [InlineData(AdaptationScope.LastLayer)]
    [InlineData(AdaptationScope.Full)]
    public void BatchAdaptationReadsTheMixesPerSampleLosses(AdaptationScope scope)
    {
        using var train = ClassificationHeadTests.Squares(64, 1, LabelKind.MultiClass);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config with { Depth = 1 }), new ClassificationHead(Config, 3));
        var adaptation = new BatchAdaptationOptions { Scope = scope, MinBatch = 4, MaxBatch = 16, InitialBatch = 8 };
        var result = tuner.Fit(train, Quick(4, new BrainFuseOptions { Consistency = 0.5 }) with { BatchAdaptation = adaptation, LogEvery = 2 }).Training;
        Assert.Equal(4, result.Steps);
        Assert.All(result.History, h => Assert.True(h.SelectedSize > 0 && h.Parts.ContainsKey("consistency")));
        Assert.Contains("parts=2 needs batches of at least 2; --dba min_batch=1 may go below",
            Assert.Throws<ArgumentException>(() => tuner.Fit(train, Quick(2, new BrainFuseOptions()) with { BatchAdaptation = adaptation with { MinBatch =
                1 } })).Message);
    }

    [Fact]
    public void AResumedRunMixesAsAnUninterruptedOne()
    {
        using var train = ClassificationHeadTests.Squares(48, 1, LabelKind.MultiClass);
        var fuse = new BrainFuseOptions { Parts = 3, Consistency = 0.5, Grid = 3 };
        FineTuneModule Task(long seed)
        {
            Seeding.SeedEverything(seed);
            return new FineTuneModule(new MedformerModel(Config), new ClassificationHead(Config, 3),
                Strategy.Full, () => new JsonObject()) { BrainFuse = fuse };
        }
        IEnumerable<Batch> Loader(long start) => new DataLoader([new LoaderSource(train)], new LoaderOptions(8, Seed: 4, Workers: 1)).Batches(start);
        var options = new TrainerOptions { MaxSteps = 12, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 3, CheckpointEvery = 6, Seed = 7,
            Precision = Precision.Fp32 };
        using (var task = Task(1))
            new Trainer(options, CPU).Fit(task, Loader, Path.Combine(root, "whole"));
        using (var task = Task(1))
        {
            using var stop = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => new Trainer(options, CPU).Fit(task, Loader, Path.Combine(root, "parts"),
                log: entry => { if (entry.Step == 6) stop.Cancel(); }, cancel: stop.Token));
        }
        using (var task = Task(99))  // another initialisation: the weights and the draws come from the checkpoint and the step
            new Trainer(options, CPU).Fit(task, Loader, Path.Combine(root, "parts"), resume: true);
        var whole = Safetensors.Load(Path.Combine(root, "whole", "model", "model.safetensors"));
        var parts = Safetensors.Load(Path.Combine(root, "parts", "model", "model.safetensors"));
        foreach (var (name, value) in whole)
            Assert.True(value.eq(parts[name]).all().item<bool>(), $"{name} differs after resuming");
    }

    [Fact]
    public void RefusalsNameTheFlag()
    {
        using var train = ClassificationHeadTests.Squares(16, 1, LabelKind.MultiClass);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3));
        string Refusal(FineTuneOptions options) => Assert.Throws<ArgumentException>(() => tuner.Fit(train, options)).Message;
        Assert.Equal("--brainfuse: parts=1: a mix needs at least 2 parts", Refusal(Quick(2, new BrainFuseOptions { Parts = 1 })));
        Assert.Equal("--brainfuse: parts=20 needs batches of at least 20 samples, not 16", Refusal(Quick(2, new BrainFuseOptions { Parts = 20 })));
        Assert.Equal("--brainfuse and --mixup both mix the batch: pick one", Refusal(Quick(2, new BrainFuseOptions()) with { Mixup = 0.2 }));
        Assert.Equal("--brainfuse: share=0 must be in (0, 1]", Refusal(Quick(2, new BrainFuseOptions { Share = 0 })));
        using var restorer = new FineTuner(new MedformerModel(Config), new ImageToImageHead(Config, task: "classification"));
        Assert.Equal("--brainfuse: the restoration head cannot combine targets (classification and segmentation heads can)",
            Assert.Throws<ArgumentException>(() => restorer.Fit(train, Quick(2, new BrainFuseOptions()))).Message);

        Assert.Equal(new BrainFuseOptions { Parts = 3, Alpha = 0.5, Weights = MixWeights.Dirichlet, Share = 0.25, Consistency = 1, Grid = 5 },
            BrainFuseOptions.Parse("parts=3,alpha=0.5,weights=dirichlet,share=0.25,consistency=1,grid=5"));
        Assert.Equal("parts=3,alpha=0.5,weights=dirichlet,share=0.25,consistency=1,grid=5",
            BrainFuseOptions.Parse("parts=3,alpha=0.5,weights=raw,share=0.25,consistency=1,grid=5").ToString());
        Assert.Equal(new BrainFuseOptions(), BrainFuseOptions.Parse(""));
        Assert.Equal("--brainfuse 'parts=1': parts=1: a mix needs at least 2 parts",
            Assert.Throws<ArgumentException>(() => BrainFuseOptions.Parse("parts=1")).Message);
        Assert.Equal("--brainfuse 'weights=mean': weights 'mean': expected dirichlet or smooth",
            Assert.Throws<ArgumentException>(() => BrainFuseOptions.Parse("weights=mean")).Message);
        Assert.StartsWith("--brainfuse 'k=2': unknown key 'k'", Assert.Throws<ArgumentException>(() => BrainFuseOptions.Parse("k=2")).Message);
    }
}
