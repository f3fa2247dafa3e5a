using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Pretrain;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Training;

public sealed class BatchAdaptationTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dba-").FullName;
    readonly TensorCorpus corpus = Squares.Corpus(64, seed: 5);

    public void Dispose()
    {
        corpus.Dispose();
        Directory.Delete(root, recursive: true);
    }

    // Per-sample gradients as rows; their Gram matrix is what the selector reads.
    static double[,] GramOf(double[][] rows)
    {
        var gram = new double[rows.Length, rows.Length];
        for (int i = 0; i < rows.Length; i++)
            for (int j = 0; j < rows.Length; j++) gram[i, j] = rows[i].Zip(rows[j], (a, b) => a * b).Sum();
        return gram;
    }

    // g0 = (3,0), g1 = g2 = (0,1). gradient_norm (‖Σg‖/√n): whole batch √13/√3 = 2.08; dropping g1 gives √10/√2 = 2.24
    // (g2 ties, the lower index goes first); then dropping g2 gives 3/1 = 3; a single sample is the floor: {0}.
    // variance_norm ((n·tr − ‖Σg‖²)/((n−1)‖Σg‖²)): whole batch (33−13)/26 = 0.77; dropping g0 gives (4−4)/4 = 0,
    // dropping g1 (20−10)/10 = 1; {1,2} has two samples, the floor: {1,2}.
    static readonly double[][] Disagreeing = [[3, 0], [0, 1], [0, 1]];

    [Fact]
    public void GreedyGradientNormKeepsTheDominantSample()
    {
        Assert.Equal([0], BatchAdaptation.Select(GramOf(Disagreeing), AdaptationStrategy.GradientNorm, candidates: 0));
        Assert.Equal(Math.Sqrt(13.0 / 3), BatchAdaptation.Score(GramOf(Disagreeing), [0, 1, 2], AdaptationStrategy.GradientNorm), 12);
    }

    [Fact]
    public void GreedyVarianceNormKeepsTheAgreeingPair()
    {
        Assert.Equal([1, 2], BatchAdaptation.Select(GramOf(Disagreeing), AdaptationStrategy.VarianceNorm, candidates: 0));
        Assert.Equal(-20.0 / 26, BatchAdaptation.Score(GramOf(Disagreeing), [0, 1, 2], AdaptationStrategy.VarianceNorm), 12);
    }

    [Fact]
    public void GreedyDropsTheOutlierOfAnAgreeingBatch()
    {
        // (1,0),(1,0),(0,1),(−1,0): both strategies drop g3 first (√5/√3 = 1.29; ratio 0.4), then g2 (2/√2 = 1.41; ratio 0).
        double[][] rows = [[1, 0], [1, 0], [0, 1], [-1, 0]];
        Assert.Equal([0, 1], BatchAdaptation.Select(GramOf(rows), AdaptationStrategy.GradientNorm, candidates: 0));
        Assert.Equal([0, 1], BatchAdaptation.Select(GramOf(rows), AdaptationStrategy.VarianceNorm, candidates: 0));
        // Identical gradients: nothing improves on the whole batch.
        Assert.Equal([0, 1, 2], BatchAdaptation.Select(GramOf([[1, 2], [1, 2], [1, 2]]), AdaptationStrategy.GradientNorm, candidates: 0));
        Assert.Equal([0, 1, 2, 3], BatchAdaptation.Select(GramOf(rows), AdaptationStrategy.None, candidates: 0));
    }

    [Fact]
    public void RandomCandidatesFindTheBestSubsetAndRepeatWithTheirSeed()
    {
        // Three agreeing samples and one opposed: {0,1,2} scores 3/√3 = 1.73, the whole batch 2/2 = 1, any pair 2/√2 = 1.41.
        var gram = GramOf([[1, 0], [1, 0], [1, 0], [-1, 0]]);
        using var a = new Generator(11);
        Assert.Equal([0, 1, 2], BatchAdaptation.Select(gram, AdaptationStrategy.GradientNorm, candidates: 200, a));
        // Too few candidates to find it may keep the whole batch, but the same seed draws the same subsets.
        using var b = new Generator(12);
        using var c = new Generator(12);
        Assert.Equal(BatchAdaptation.Select(gram, AdaptationStrategy.VarianceNorm, candidates: 2, b),
            BatchAdaptation.Select(gram, AdaptationStrategy.VarianceNorm, candidates: 2, c));
    }

    [Fact]
    public void LastLayerGradientsInOneBatchedOpEqualPerSampleBackwardPasses()
    {
        Seeding.SeedEverything(9);
        using var scope = NewDisposeScope();
        var first = nn.Linear(4, 5);
        var last = nn.Linear(5, 3);
        var x = randn(6, 2, 4);                                                  // 6 samples of 2 tokens
        var hidden = first.call(x).tanh();
        var y = last.call(hidden);                                               // [6,2,3]
        var losses = (y.square() * tensor(new float[] { 1, -2, 3 })).sum([1, 2]) + y.sum([1, 2]).sin();  // [6]
        var outputGrad = autograd.grad([losses.sum()], [y], retain_graph: true)[0];
        var (weight, bias) = BatchAdaptation.LinearGradients(hidden.detach(), outputGrad);
        Assert.Equal([6L, 3, 5], weight.shape);
        Assert.Equal([6L, 3], bias.shape);
        for (int i = 0; i < 6; i++)
        {
            var grads = autograd.grad([losses[i]], [last.weight!, last.bias!], retain_graph: true);
            Assert.True(weight[i].allclose(grads[0], rtol: 1e-5, atol: 1e-6), $"sample {i}: weight gradient");
            Assert.True(bias[i].allclose(grads[1], rtol: 1e-5, atol: 1e-6), $"sample {i}: bias gradient");
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(3)]
    public void LinearGramEqualsTheGramOfPerSampleBackwardPasses(int tokens)
    {
        Seeding.SeedEverything(13);
        using var scope = NewDisposeScope();
        var first = nn.Linear(6, 5);
        var last = nn.Linear(5, 4);
        var x = randn(7, tokens, 6);
        var hidden = first.call(x);
        var active = hidden.relu();
        var y = last.call(active);
        var losses = (y.square() * tensor(new float[] { 1, -2, 3, 0.5f })).sum([1, 2]) + y.sum([1, 2]).sin();  // [7]
        var grads = autograd.grad([losses.sum()], [hidden, y], retain_graph: true);
        var firstGram = BatchAdaptation.ToMatrix(BatchAdaptation.LinearGram(x, grads[0]));
        var lastGram = BatchAdaptation.ToMatrix(BatchAdaptation.LinearGram(active.detach(), grads[1]));

        Tensor[] parameters = [first.weight!, first.bias!, last.weight!, last.bias!];
        var perSample = parameters.Select(_ => new Tensor[7]).ToArray();
        for (int i = 0; i < 7; i++)
        {
            var g = autograd.grad([losses[i]], parameters, retain_graph: true);
            for (int p = 0; p < parameters.Length; p++) perSample[p][i] = g[p];
        }
        var firstExpected = BatchAdaptation.Gram([stack(perSample[0]), stack(perSample[1])]);
        var lastExpected = BatchAdaptation.Gram([stack(perSample[2]), stack(perSample[3])]);
        for (int i = 0; i < 7; i++)
            for (int j = 0; j < 7; j++)
            {
                Assert.Equal(firstExpected[i, j], firstGram[i, j], 1e-4 * (1 + Math.Abs(firstExpected[i, j])));
                Assert.Equal(lastExpected[i, j], lastGram[i, j], 1e-4 * (1 + Math.Abs(lastExpected[i, j])));
            }
        Assert.Contains("must agree", Assert.Throws<ArgumentException>(() => BatchAdaptation.LinearGram(x, grads[1][..3])).Message);
    }

    [Fact]
    public void OurVariantsSelectTheSubsetsComputedByHand()
    {
        var gram = GramOf(Disagreeing);
        // gradient_sum (‖Σg‖): whole batch √13 = 3.61; dropping g0 gives 2, g1 √10 = 3.16: nothing improves.
        Assert.Equal([0, 1, 2], BatchAdaptation.Select(gram, AdaptationStrategy.GradientSum, candidates: 0));
        Assert.Equal(Math.Sqrt(13), BatchAdaptation.Score(gram, [0, 1, 2], AdaptationStrategy.GradientSum), 12);
        // (1,0),(1,0),(0,1),(−1,0): whole √2; dropping g3 gives √5 = 2.24; then dropping g2 gives 2: stop at {0,1,2}.
        Assert.Equal([0, 1, 2], BatchAdaptation.Select(GramOf([[1, 0], [1, 0], [0, 1], [-1, 0]]), AdaptationStrategy.GradientSum, candidates: 0));
        // variance (tr Cov/n = (n·tr − ‖Σg‖²)/(n²(n−1))): whole (33−13)/18 = 1.11; {1,2} (4−4)/4 = 0; {0,2} (20−10)/4 = 2.5.
        Assert.Equal([1, 2], BatchAdaptation.Select(gram, AdaptationStrategy.Variance, candidates: 0));
        Assert.Equal(-20.0 / 18, BatchAdaptation.Score(gram, [0, 1, 2], AdaptationStrategy.Variance), 12);

        // A floor of half the batch (⌈1.5⌉ = 2): gradient_norm drops g1 (2.24) and stops at two samples.
        Assert.Equal([0, 2], BatchAdaptation.Select(gram, AdaptationStrategy.GradientNorm, candidates: 0, minSelected: 0.5));
        Assert.Equal([0, 1, 2], BatchAdaptation.Select(gram, AdaptationStrategy.GradientNorm, candidates: 0, minSelected: 1));
        using var random = new Generator(3);
        Assert.Equal([0, 1, 2, 3], BatchAdaptation.Select(GramOf([[1, 0], [1, 0], [1, 0], [-1, 0]]), AdaptationStrategy.GradientNorm, candidates: 50, random,
            minSelected: 1));
        Assert.Equal(32, BatchAdaptationOptions.SelectionFloor(64, AdaptationStrategy.GradientNorm, 0.5));
        Assert.Equal(2, BatchAdaptationOptions.SelectionFloor(4, AdaptationStrategy.GradientNorm, 0.3));   // ⌈1.2⌉
        Assert.Equal(2, BatchAdaptationOptions.SelectionFloor(3, AdaptationStrategy.Variance, 0));         // a variance needs two
        Assert.Equal(new BatchAdaptation(new BatchAdaptationOptions { MinSelected = 0.5 }).Select(gram), BatchAdaptation.Select(gram,
            AdaptationStrategy.GradientNorm, 0, minSelected: 0.5));
    }

    [Fact]
    public void BatchSizeRuleGrowsShrinksAndClamps()
    {
        var options = new BatchAdaptationOptions { Delta = 8, MinBatch = 8, MaxBatch = 64 };
        Assert.Equal(40, BatchAdaptation.NextBatchSize(32, 26, options));     // 26 > 0.8·32 = 25.6
        Assert.Equal(32, BatchAdaptation.NextBatchSize(32, 25.6, options));   // not above
        Assert.Equal(32, BatchAdaptation.NextBatchSize(32, 6.4, options));    // not below 0.2·32
        Assert.Equal(24, BatchAdaptation.NextBatchSize(32, 6, options));
        Assert.Equal(64, BatchAdaptation.NextBatchSize(60, 60, options));     // 68 clamped to max
        Assert.Equal(8, BatchAdaptation.NextBatchSize(10, 1, options));       // 2 clamped to min
        Assert.Equal(2.5, BatchAdaptation.Median([4, 1, 2, 3]));

        // A window of 3 steps; each step gives per-layer sizes; a change clears the window.
        var rule = new BatchAdaptation(options with { InitialBatch = 32, Window = 3 });
        Assert.Equal(40, rule.Update([30, 10, 28]));                           // median 28 > 25.6 → 40
        Assert.Equal(40, rule.CurrentBatch);
        Assert.Empty(rule.State.Recent);
        Assert.Equal(40, rule.Update([20]));                                   // 20: neither
        Assert.Equal(32, rule.Update([2, 3]));                                 // median of {20,2,3} = 3 < 8 → 32
        Assert.Equal(32, rule.CurrentBatch);
    }

    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static Pretraining Rotation(long seed, bool simclr = false)
    {
        Seeding.SeedEverything(seed);
        var model = new MedformerModel(Config);
        return simclr
            ? new Pretraining(model, [(new Rotation(Config.Dim), 1.0), (new SimClr(Config.Dim), 0.5)])
            : new Pretraining(model, [(new Rotation(Config.Dim), 1.0)]);
    }

    Func<long, IEnumerable<Batch>> Loader(int views = 1) =>
        start => new DataLoader([new LoaderSource(corpus, Views: views)], new LoaderOptions(12, Seed: 3, Workers: 1)).Batches(start);

    static TrainerOptions Options(AdaptationScope scope, AdaptationStrategy strategy) => new()
    {
        MaxSteps = 8, LearningRate = 3e-3, WarmupSteps = 2, LogEvery = 2, CheckpointEvery = 4, Seed = 7, Precision = Precision.Fp32,
        BatchAdaptation = new BatchAdaptationOptions
        {
            Strategy = strategy, Scope = scope, Candidates = scope == AdaptationScope.LastLayer ? 16 : 0,
            MinBatch = 4, MaxBatch = 12, InitialBatch = 8, Delta = 2,
        },
    };

    [Theory]
    [InlineData(AdaptationScope.Full, AdaptationStrategy.VarianceNorm)]
    [InlineData(AdaptationScope.LastLayer, AdaptationStrategy.GradientNorm)]
    public void AnAdaptiveRunLogsItsSizesAndResumesExactly(AdaptationScope scope, AdaptationStrategy strategy)
    {
        var logs = new List<TrainerLog>();
        using (var task = Rotation(2))
            new Trainer(Options(scope, strategy), CPU).Fit(task, Loader(), Path.Combine(root, "whole"), log: logs.Add);
        Assert.Equal(4, logs.Count);
        Assert.All(logs, l => Assert.InRange(l.BatchSize!.Value, 4, 12));
        Assert.All(logs, l => Assert.InRange(l.SelectedSize!.Value, 1, l.BatchSize!.Value));
        Assert.Equal(8, logs[0].BatchSize);                                    // the initial size's first step
        Assert.All(logs, l => Assert.True(double.IsFinite(l.Loss)));

        using (var task = Rotation(2))
        {
            using var stop = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => new Trainer(Options(scope, strategy), CPU).Fit(task, Loader(), Path.Combine(root, "parts"),
                log: entry => { if (entry.Step == 4) stop.Cancel(); }, cancel: stop.Token));
        }
        string checkpoint = TrainingCheckpoint.Latest(Path.Combine(root, "parts"))!;
        using (var json = JsonDocument.Parse(File.ReadAllText(Path.Combine(checkpoint, "trainer.json"))))
            Assert.InRange(json.RootElement.GetProperty("batch_adaptation").GetProperty("current_batch").GetInt32(), 4, 12);
        using (var task = Rotation(99))
            new Trainer(Options(scope, strategy), CPU).Fit(task, Loader(), Path.Combine(root, "parts"), resume: true);

        var whole = Safetensors.Load(Path.Combine(root, "whole", "model", "model.safetensors"));
        var parts = Safetensors.Load(Path.Combine(root, "parts", "model", "model.safetensors"));
        foreach (var (name, value) in whole)
            Assert.True(value.eq(parts[name]).all().item<bool>(), $"{name} differs after resuming");
    }

    [Fact]
    public void CoupledObjectivesAreRefusedWithTheReason()
    {
        using var task = Rotation(1, simclr: true);
        var error = Assert.Throws<ArgumentException>(() =>
            new Trainer(Options(AdaptationScope.LastLayer, AdaptationStrategy.GradientNorm), CPU).Fit(task, Loader(views: 2), Path.Combine(root, "simclr")));
        Assert.Contains("batch_adaptation", error.Message);
        Assert.Contains("simclr couple", error.Message);
        Assert.DoesNotContain("rotation couple", error.Message);
    }

    [Theory]
    [InlineData("grow_above", nameof(BatchAdaptationOptions.GrowAbove))]
    [InlineData("shrink_below", nameof(BatchAdaptationOptions.ShrinkBelow))]
    [InlineData("min_batch", nameof(BatchAdaptationOptions.MinBatch))]
    [InlineData("max_batch", nameof(BatchAdaptationOptions.MaxBatch))]
    [InlineData("initial_batch", nameof(BatchAdaptationOptions.InitialBatch))]
    [InlineData("delta", nameof(BatchAdaptationOptions.Delta))]
    [InlineData("candidates", nameof(BatchAdaptationOptions.Candidates))]
    [InlineData("window", nameof(BatchAdaptationOptions.Window))]
    [InlineData("min_selected", nameof(BatchAdaptationOptions.MinSelected))]
    public void BadOptionsNameTheirKey(string key, string property)
    {
        var good = new BatchAdaptationOptions { Strategy = AdaptationStrategy.VarianceNorm, MinBatch = 4, MaxBatch = 32 };
        good.Validate();
        var bad = property switch
        {
            nameof(BatchAdaptationOptions.GrowAbove) => good with { GrowAbove = 1.5 },
            nameof(BatchAdaptationOptions.ShrinkBelow) => good with { ShrinkBelow = 0.9 },
            nameof(BatchAdaptationOptions.MinBatch) => good with { MinBatch = 1 },   // a variance needs two samples
            nameof(BatchAdaptationOptions.MaxBatch) => good with { MaxBatch = 3 },
            nameof(BatchAdaptationOptions.InitialBatch) => good with { InitialBatch = 40 },
            nameof(BatchAdaptationOptions.Delta) => good with { Delta = 0 },
            nameof(BatchAdaptationOptions.Candidates) => good with { Candidates = -1 },
            nameof(BatchAdaptationOptions.MinSelected) => good with { MinSelected = 1.5 },
            _ => good with { Window = 0 },
        };
        var error = Assert.Throws<ArgumentException>(() => bad.Validate());
        Assert.StartsWith($"batch_adaptation.{key}:", error.Message);
        var trainer = Assert.Throws<ArgumentException>(() => new TrainerOptions { BatchAdaptation = bad }.Validate());
        Assert.Contains(key, trainer.Message);
    }

    [Fact]
    public void AdaptationNeedsOneMicroBatchPerStep()
    {
        var options = new TrainerOptions { Accumulation = 2, BatchAdaptation = new BatchAdaptationOptions() };
        Assert.Contains("accumulation 1, not 2", Assert.Throws<ArgumentException>(options.Validate).Message);
        (options with { BatchAdaptation = new BatchAdaptationOptions { Strategy = AdaptationStrategy.None } }).Validate();  // off: no constraint
    }

    [Fact]
    public void RunConfigReadsTheSectionAndNamesBadKeys()
    {
        var config = RunConfig.Parse("""
            objectives: { rotation: { weight: 1 } }
            batch: { size: 32 }
            batch_adaptation: { strategy: variance_norm, scope: last_layer, candidates: 16, min_batch: 8, delta: 4 }
            """, "run.yaml");
        var options = PretrainJob.TrainerOptions(config).BatchAdaptation!;
        Assert.Equal(AdaptationStrategy.VarianceNorm, options.Strategy);
        Assert.Equal(AdaptationScope.LastLayer, options.Scope);
        Assert.Equal((16, 8, 32, 4), (options.Candidates, options.MinBatch, options.MaxBatch, options.Delta));
        Assert.Equal(0, options.MinSelected);
        var ours = PretrainJob.TrainerOptions(RunConfig.Parse("""
            objectives: { rotation: { weight: 1 } }
            batch_adaptation: { strategy: gradient_sum, min_selected: 0.5 }
            """, "run.yaml")).BatchAdaptation!;
        Assert.Equal((AdaptationStrategy.GradientSum, 0.5), (ours.Strategy, ours.MinSelected));
        Assert.Contains("batch_adaptation.min_selected", Assert.Throws<ArgumentException>(() =>
            RunConfig.Parse("batch_adaptation: { min_selected: 2 }", "run.yaml")).Message);

        Assert.Contains("batch_adaptation.strategy: 'fastest' must be", Assert.Throws<ArgumentException>(() =>
            RunConfig.Parse("batch_adaptation: { strategy: fastest }", "run.yaml")).Message);
        Assert.Contains("batch_adaptation.max_batch: 64 must not exceed batch.size 32", Assert.Throws<ArgumentException>(() =>
            RunConfig.Parse("batch: { size: 32 }\nbatch_adaptation: { max_batch: 64 }", "run.yaml")).Message);
        Assert.Contains("batch_adaptation.grow_above", Assert.Throws<ArgumentException>(() =>
            RunConfig.Parse("batch_adaptation: { grow_above: 2 }", "run.yaml")).Message);
        Assert.Contains("unknown key", Assert.Throws<ArgumentException>(() =>
            RunConfig.Parse("batch_adaptation: { grow: 2 }", "run.yaml")).Message);
    }
}
