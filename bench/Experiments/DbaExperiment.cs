using System.Diagnostics;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Eval;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run dba</c>: tests the DBA paper's claim (arXiv:2208.00815: 97.79% on 1% of MNIST with one hidden
/// layer, against SGD and Adam) on Fashion-MNIST (Debian's dataset-fashion-mnist; MNIST itself is not packaged,
/// so not offline). Two settings, each on 1% of the training labels (600 images, the same seeded draw per seed)
/// with and without DBA/EDBA, and on all 60 000 without, scored on the 10 000 test images:
/// <list type="bullet">
/// <item>a small Medformer with a classifier head through our <see cref="Trainer"/> (AdamW, cosine schedule;
/// MEDFORMER_DBA_STEPS, default 300);</item>
/// <item>the paper's own: a 784-H-10 ReLU MLP (<see cref="DbaMlp"/>; H = MEDFORMER_DBA_HIDDEN, default 256) with
/// plain SGD (lr 0.1; 0.01 in three arms) or Adam (lr 1e-3) at a constant rate, MEDFORMER_DBA_MLP_STEPS (default
/// 5000) steps, plus our variants of the selection rule (labelled "ours").</item>
/// </list>
/// MEDFORMER_DBA_SEEDS (default 2) and MEDFORMER_DBA_ARMS (comma list of arm numbers; default all) keep a run short.
/// </summary>
public static class DbaExperiment
{
    enum Network { Medformer, Mlp }

    sealed record Arm(string Name, double Fraction, BatchAdaptationOptions? Adaptation, int Batch = 64, Network Model = Network.Medformer,
        DbaMlp.OptimizerKind Optimizer = DbaMlp.OptimizerKind.Sgd, double? LearningRate = null, int PerClass = 0);

    sealed record Outcome(double Accuracy, double? BestAccuracy, double? LastBatch, double? MeanSelected, double? TrainLoss = null, double? DeadHidden = null);

    /// <summary>The steps, width and seeds of every arm (MEDFORMER_DBA_*).</summary>
    sealed record Settings(long Steps, long MlpSteps, int Hidden, int Seeds)
    {
        public long StepsOf(Arm arm) => arm.Model == Network.Mlp ? MlpSteps : Steps;
    }

    public static BenchReport Run(BenchOptions options)
    {
        string folder = MnistCorpus.FashionMnistFolder;
        if (!File.Exists(Path.Combine(folder, "train-images-idx3-ubyte.gz")) && !File.Exists(Path.Combine(folder, "train-images-idx3-ubyte")))
            throw new FileNotFoundException($"{folder}: Fashion-MNIST is missing; apt-get install dataset-fashion-mnist");
        var settings = new Settings(long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_STEPS") ?? "300"),
            long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_MLP_STEPS") ?? "5000"),
            int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_HIDDEN") ?? "256"),
            int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_SEEDS") ?? "2"));
        var arms = ChosenArms();
        var (trainImages, trainLabels) = Load(folder, "train");
        var (testImages, testLabels) = Load(folder, "test");
        var report = new BenchReport("dba");
        var means = new Dictionary<string, double>();
        foreach (var arm in arms)
        {
            var (outcomes, seconds) = RunSeeds(arm, settings, trainImages, trainLabels, testImages, testLabels);
            means[arm.Name] = AddArm(report, arm, settings, outcomes, seconds);
        }
        trainImages.Dispose();
        testImages.Dispose();
        AddHeadline(report, means);
        report.Extra("steps", settings.Steps);
        report.Extra("mlp_steps", settings.MlpSteps);
        report.Extra("mlp_hidden", settings.Hidden);
        report.Extra("seeds", settings.Seeds);
        return report;
    }

    /// <summary>The arms, in their order (their numbers are MEDFORMER_DBA_ARMS's): the Medformer's first, then the paper's MLP.</summary>
    static Arm[] Arms()
    {
        var dba = new BatchAdaptationOptions { Strategy = AdaptationStrategy.GradientNorm, Scope = AdaptationScope.Full, MinBatch = 8, MaxBatch = 64,
            InitialBatch = 32, Delta = 8 };
        var variance = dba with { Strategy = AdaptationStrategy.VarianceNorm };
        const DbaMlp.OptimizerKind Adam = DbaMlp.OptimizerKind.Adam;
        return
        [
            new("1% baseline (batch 64)", 0.01, null),
            new("1% DBA gradient_norm greedy", 0.01, dba),
            new("1% DBA variance_norm greedy", 0.01, variance),
            new("1% EDBA gradient_norm 64 cand.", 0.01, dba with { Scope = AdaptationScope.LastLayer, Candidates = 64 }),
            new("1% EDBA variance_norm 64 cand.", 0.01, variance with { Scope = AdaptationScope.LastLayer, Candidates = 64 }),
            new("100% baseline (batch 64)", 1.0, null),
            // Separates the selection's effect from that of the small batches it settles on.
            new("1% baseline (batch 8)", 0.01, null, Batch: 8),
            // The paper's setting: one hidden layer, plain SGD and Adam against DBA (per-layer subsets = scope full).
            new("MLP 1% SGD (batch 64)", 0.01, null, Model: Network.Mlp),
            new("MLP 1% Adam (batch 64)", 0.01, null, Model: Network.Mlp, Optimizer: Adam),
            new("MLP 1% SGD (batch 8)", 0.01, null, Batch: 8, Model: Network.Mlp),
            new("MLP 1% DBA gradient_norm SGD", 0.01, dba, Model: Network.Mlp),
            new("MLP 1% DBA variance_norm SGD", 0.01, variance, Model: Network.Mlp),
            new("MLP 1% DBA gradient_norm Adam", 0.01, dba, Model: Network.Mlp, Optimizer: Adam),
            new("MLP 1% DBA variance_norm Adam", 0.01, variance, Model: Network.Mlp, Optimizer: Adam),
            // Our readings of the rule, not the paper's: a floor of half the batch, and the metrics without their normalisers.
            new("MLP 1% ours: gradient_norm, >= half SGD", 0.01, dba with { MinSelected = 0.5 }, Model: Network.Mlp),
            new("MLP 1% ours: variance_norm, >= half SGD", 0.01, variance with { MinSelected = 0.5 }, Model: Network.Mlp),
            new("MLP 1% ours: variance (no /mean^2) SGD", 0.01, dba with { Strategy = AdaptationStrategy.Variance }, Model: Network.Mlp),
            new("MLP 1% ours: gradient_sum (no /sqrt n) SGD", 0.01, dba with { Strategy = AdaptationStrategy.GradientSum }, Model: Network.Mlp),
            new("MLP 100% SGD (batch 64)", 1.0, null, Model: Network.Mlp),
            new("MLP 100% Adam (batch 64)", 1.0, null, Model: Network.Mlp, Optimizer: Adam),
            // DBA's subsets have larger mean gradients than whole batches: SGD at a tenth of the rate, with and without.
            new("MLP 1% SGD lr 0.01 (batch 64)", 0.01, null, Model: Network.Mlp, LearningRate: 0.01),
            new("MLP 1% DBA gradient_norm SGD lr 0.01", 0.01, dba, Model: Network.Mlp, LearningRate: 0.01),
            new("MLP 1% DBA variance_norm SGD lr 0.01", 0.01, variance, Model: Network.Mlp, LearningRate: 0.01),
            // The paper's second claim: 10 samples per class (100 images).
            new("MLP 10/class SGD (batch 64)", 0, null, Model: Network.Mlp, PerClass: 10),
            new("MLP 10/class Adam (batch 64)", 0, null, Model: Network.Mlp, Optimizer: Adam, PerClass: 10),
            new("MLP 10/class DBA gradient_norm SGD lr 0.01", 0, dba, Model: Network.Mlp, LearningRate: 0.01, PerClass: 10),
            new("MLP 10/class DBA variance_norm SGD lr 0.01", 0, variance, Model: Network.Mlp, LearningRate: 0.01, PerClass: 10),
            new("MLP 10/class DBA gradient_norm Adam", 0, dba, Model: Network.Mlp, Optimizer: Adam, PerClass: 10),
        ];
    }

    /// <summary>The arms MEDFORMER_DBA_ARMS names by number (comma-separated), else all.</summary>
    static Arm[] ChosenArms()
    {
        var arms = Arms();
        if (Environment.GetEnvironmentVariable("MEDFORMER_DBA_ARMS") is { Length: > 0 } pick)
        {
            var chosen = pick.Split(',').Select(int.Parse).ToHashSet();
            arms = [.. arms.Where((_, i) => chosen.Contains(i))];
        }
        return arms;
    }

    /// <summary>Trains and scores the arm once per seed; each seed's outcome and wall seconds.</summary>
    static (List<Outcome> Outcomes, List<double> Seconds) RunSeeds(Arm arm, Settings settings, Tensor trainImages, long[] trainLabels, Tensor testImages,
        long[] testLabels)
    {
        var outcomes = new List<Outcome>();
        var seconds = new List<double>();
        long armSteps = settings.StepsOf(arm);
        for (int seed = 0; seed < settings.Seeds; seed++)
        {
            var clock = Stopwatch.StartNew();
            var outcome = arm.Model == Network.Mlp
                ? TrainMlp(arm, seed, armSteps, settings.Hidden, trainImages, trainLabels, testImages, testLabels)
                : Train(arm, seed, armSteps, trainImages, trainLabels, testImages, testLabels);
            clock.Stop();
            outcomes.Add(outcome);
            seconds.Add(clock.Elapsed.TotalSeconds);
            Console.WriteLine($"  {arm.Name}, seed {seed}: test accuracy {outcome.Accuracy:P2}" +
                (outcome.BestAccuracy is { } b ? $" (best check {b:P2})" : "") + $", {armSteps} steps, {clock.Elapsed.TotalSeconds:F1} s" +
                (outcome.LastBatch is { } s ? $", last batch size {s:F0}" : "") + (outcome.MeanSelected is { } m ? $", mean selected (last 10%) {m:F1}"
                    : "") +
                (outcome.TrainLoss is { } l ? $", train loss (last 10%) {l:G3}" : "") + (outcome.DeadHidden is { } d ? $", dead hidden units {d:P0}" : ""));
        }
        return (outcomes, seconds);
    }

    /// <summary>
    /// Adds the arm's rows: mean accuracy over the seeds, the best check and last batch size where it has them, wall
    /// time; returns the mean accuracy, which the headline compares.
    /// </summary>
    static double AddArm(BenchReport report, Arm arm, Settings settings, List<Outcome> outcomes, List<double> seconds)
    {
        var accuracies = outcomes.Select(o => o.Accuracy).ToArray();
        string each = string.Join(", ", accuracies.Select(a => (a * 100).ToString("F2")));
        report.Add(new BenchRow($"{arm.Name}: accuracy", accuracies.Average() * 100, null,
            $"% test after {settings.StepsOf(arm)} steps (mean of {settings.Seeds} seeds: {each})"));
        if (outcomes.All(o => o.BestAccuracy is not null))
            report.Add(new BenchRow($"{arm.Name}: best check", outcomes.Average(o => o.BestAccuracy!.Value) * 100, null,
                "% test, best of 10 checks (picked on the test set: optimistic)"));
        report.Add(new BenchRow($"{arm.Name}: wall time", seconds.Average(), null, "s per run", HigherIsBetter: false));
        if (outcomes.All(o => o.LastBatch is not null)) report.Add(new BenchRow($"{arm.Name}: last batch size", outcomes.Average(o => o.LastBatch!.Value),
            null, "samples"));
        return accuracies.Average();
    }

    /// <summary>
    /// The headline: the paper's setting if it ran (its best DBA arm against the better of plain SGD and Adam), else the
    /// Medformer's (its best adaptive arm against the 1% baseline); none when neither pair ran.
    /// </summary>
    static void AddHeadline(BenchReport report, Dictionary<string, double> means)
    {
        var plainMlp = means.Where(m => m.Key.StartsWith("MLP 1% S", StringComparison.Ordinal) || m.Key.StartsWith("MLP 1% Adam",
            StringComparison.Ordinal)).OrderByDescending(m => m.Value).FirstOrDefault();
        var dbaMlp = means.Where(m => m.Key.StartsWith("MLP 1% DBA", StringComparison.Ordinal)).OrderByDescending(m => m.Value).FirstOrDefault();
        var adaptive = means.Where(m => m.Key.StartsWith("1% ", StringComparison.Ordinal) && m.Key.Contains("DBA")).OrderByDescending(m =>
            m.Value).FirstOrDefault();
        if (plainMlp.Key is not null && dbaMlp.Key is not null)
            report.Headline(report.Add(new BenchRow($"best MLP 1% DBA vs best plain MLP 1% ({dbaMlp.Key} vs {plainMlp.Key})", dbaMlp.Value * 100,
                plainMlp.Value * 100, "% test accuracy")));
        else if (adaptive.Key is not null && means.TryGetValue("1% baseline (batch 64)", out double baseline))
            report.Headline(report.Add(new BenchRow($"best 1% adaptive vs 1% baseline ({adaptive.Key})", adaptive.Value * 100, baseline * 100,
                "% test accuracy")));
    }

    /// <summary>
    /// The arm's training images: all of them, the seed's fraction of each class, or <see cref="Arm.PerClass"/> of
    /// each class, all from the seed's one order (<see cref="FewLabels"/>: each shared by every arm of that seed).
    /// </summary>
    static Tensor Subset(Arm arm, int seed, long[] labels) => tensor(Array.ConvertAll(
        arm.PerClass > 0 ? FewLabels.PerClass(labels, arm.PerClass, seed) : FewLabels.Fraction(labels, arm.Fraction, seed), i => (long)i));

    static Outcome TrainMlp(Arm arm, int seed, long steps, int hidden, Tensor trainImages, long[] trainLabels, Tensor testImages, long[] testLabels)
    {
        Seeding.SeedEverything(seed);
        using var scope = NewDisposeScope();
        var order = Subset(arm, seed, trainLabels);
        var images = trainImages.index_select(0, order).flatten(1);
        var labels = tensor(trainLabels).index_select(0, order);
        var result = DbaMlp.Train(images, labels, testImages.flatten(1), tensor(testLabels), hidden, arm.Optimizer,
            arm.LearningRate ?? (arm.Optimizer == DbaMlp.OptimizerKind.Sgd ? 0.1 : 1e-3), arm.Adaptation, arm.Batch, steps, seed);
        return new Outcome(result.Accuracy, result.BestAccuracy, result.LastBatch, result.MeanSelected, result.TrainLoss, result.DeadHidden);
    }

    static Outcome Train(Arm arm, int seed, long steps, Tensor trainImages, long[] trainLabels, Tensor testImages, long[] testLabels)
    {
        Seeding.SeedEverything(seed);
        using var order = Subset(arm, seed, trainLabels);
        var picked = order.data<long>().ToArray();
        using var images = trainImages.index_select(0, order);
        using var labels = tensor(picked.Select(i => trainLabels[i]).ToArray());
        using var corpus = new TensorCorpus("fashion-mnist", images, labels);
        var config = MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };
        using var tuner = new FineTuner(new MedformerModel(config), new ClassificationHead(config, 10, pooling: Pooling.Query));
        double? lastBatch = null;
        tuner.Fit(corpus, new FineTuneOptions
        {
            MaxSteps = steps, BatchSize = arm.Batch, LearningRate = 2e-3, MinLearningRate = 1e-5, WarmupSteps = steps / 10, WeightDecay = 0.05,
            Precision = Precision.Fp32, Seed = seed, LogEvery = (int)Math.Max(1, steps / 10), BatchAdaptation = arm.Adaptation,
        }, log: entry => lastBatch = entry.BatchSize);
        var metas = testLabels.Select((label, i) => new SampleMeta("fashion-mnist/test", $"test[{i}]", i, "other", "other", Dimensionality.Image, [1.0, 1.0],
            [label])).ToList();
        using var probabilities = tuner.Predict(testImages, metas);
        using var predicted = probabilities.argmax(1);
        return new Outcome(predicted.data<long>().ToArray().Zip(testLabels).Average(p => p.First == p.Second ? 1.0 : 0.0), null, lastBatch, null);
    }

    /// <summary>A split of the MNIST-layout folder: images [N,1,28,28] normalised with the training set's mean and std, labels [N].</summary>
    static (Tensor Images, long[] Labels) Load(string folder, string split)
    {
        using var corpus = MnistCorpus.Open(folder, split);
        using var scope = NewDisposeScope();
        var images = new Tensor[corpus.Count];
        var labels = new long[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            var sample = corpus.Get(i);  // its tensors belong to the scope
            images[i] = sample.Image;
            labels[i] = sample.Meta.Labels[0];
        }
        var normalised = (stack(images) - 0.2860) / 0.3530;
        return (scope.MoveToOuter(normalised), labels);
    }
}
