using System.Diagnostics;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Eval;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Pretrain;
using Medformer.Training;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run pays</c>: does pretraining pay? Issue 13's protocol on Fashion-MNIST (real 28×28 grey images, 10
/// classes; Debian's dataset-fashion-mnist): pretrain Medformer on the 60,000 training images without labels (a run
/// config, MEDFORMER_PAYS_CONFIG; or an already pretrained model folder, MEDFORMER_PAYS_MODEL), then, for each seed,
/// draw 1% of the training labels (60 per class) and score on the 10,000 test images:
/// a linear model on raw pixels, and a random and the pretrained encoder, each by a linear probe on frozen
/// flattened latents and by fine-tuning everything with a flattened-latent head through the trainer.
/// MEDFORMER_PAYS_SEEDS (3; MEDFORMER_PAYS_FIRST_SEED, 0, to split seeds over processes), MEDFORMER_PAYS_FRACTION (0.01), MEDFORMER_PAYS_STEPS (fine-tuning
/// steps, 1000),
/// MEDFORMER_PAYS_LR (1e-3), MEDFORMER_PAYS_SMOOTHING (label smoothing, 0), MEDFORMER_PAYS_MIXUP (mixup's α, 0), MEDFORMER_PAYS_STRATEGY (full, llrd:D, …)
/// and MEDFORMER_PAYS_INITS ("random,pretrained"; "pretrained" alone skips the random rows) set the protocol.
/// MEDFORMER_PAYS_SELF_TRAIN=STEPS[:THRESHOLD[:SHARE[:STUDENT]]] adds a row: the fine-tuned model pseudo-labels the
/// other 59,400 training images and fine-tuning goes on STEPS more over both (<see cref="SemiSupervised.SelfTrain"/>), from
/// the teacher's weights, or from the pretrained ones with STUDENT "pretrained", with stronger augmentation as a fifth
/// field "strong", for ROUNDS rounds as a sixth (1; :STEPS:THRESHOLD:SHARE:STUDENT:AUGMENT:ROUNDS); its CPU-minutes reported.
/// MEDFORMER_PAYS_FIXMATCH=STEPS[:THRESHOLD[:RATIO[:WEIGHT[:START]]]] adds a row per init: FixMatch (<see cref="SemiSupervised.FixMatch"/>)
/// over the labelled and the other 59,400 images for STEPS, τ THRESHOLD (0.95), μ RATIO (7), λ_u WEIGHT (1), from the
/// fine-tuned model (START "tuned", the default) or the pretrained one ("pretrained"), with MEDFORMER_PAYS_EMA's decay
/// (0: none); its CPU-minutes reported. MEDFORMER_PAYS_PRECISION (bf16) is fine-tuning's precision. An experiment: no PyTorch reference in the run (the issue's
/// PyTorch rows are quoted in the report).
/// </summary>
public static class PaysExperiment
{
    public static BenchReport Run(BenchOptions options)
    {
        string folder = MnistCorpus.FashionMnistFolder;
        int seeds = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SEEDS") ?? "3");
        int firstSeed = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FIRST_SEED") ?? "0");
        double fraction = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FRACTION") ?? "0.01");
        long steps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STEPS") ?? "1000");
        double lr = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_LR") ?? "1e-3");
        double smoothing = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SMOOTHING") ?? "0");
        var strategy = Strategy.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STRATEGY") ?? "full");
        var inits = (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_INITS") ?? "random,pretrained").Split(',');
        var selfTrain = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SELF_TRAIN") is { Length: > 0 } spec ? spec.Split(':') : null;
        long selfTrainSteps = selfTrain is null ? 0 : long.Parse(selfTrain[0]);
        var selfTraining = new SelfTrainingOptions
        {
            Threshold = selfTrain is { Length: > 1 } ? double.Parse(selfTrain[1]) : 0,
            UnlabelledShare = selfTrain is { Length: > 2 } ? double.Parse(selfTrain[2]) : 0.5,
            // A fifth field "strong": the student's noise is stronger than fine-tuning's crops and flips (Noisy Student).
            Augment = selfTrain is { Length: > 4 } && selfTrain[4] == "strong" ? StrongAugment : null,
            Rounds = selfTrain is { Length: > 5 } ? int.Parse(selfTrain[5]) : 1,
        };
        var selfTrainCpuMinutes = new List<double>();
        // FixMatch: STEPS[:THRESHOLD[:RATIO[:WEIGHT[:START]]]], START "tuned" (from the fine-tuned model) or "pretrained".
        var fixMatchSpec = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FIXMATCH") is { Length: > 0 } fm ? fm.Split(':') : null;
        var fixMatch = new FixMatchOptions
        {
            Threshold = fixMatchSpec is { Length: > 1 } ? double.Parse(fixMatchSpec[1]) : 0.95,
            UnlabelledRatio = fixMatchSpec is { Length: > 2 } ? double.Parse(fixMatchSpec[2]) : 7,
            Weight = fixMatchSpec is { Length: > 3 } ? double.Parse(fixMatchSpec[3]) : 1,
        };
        string fixMatchStart = fixMatchSpec is { Length: > 4 } ? fixMatchSpec[4] : "tuned";
        if (fixMatchStart is not ("tuned" or "pretrained"))
            throw new ArgumentException($"MEDFORMER_PAYS_FIXMATCH: the fifth field is tuned or pretrained, not '{fixMatchStart}'");
        var fixMatchCpuMinutes = new List<double>();
        double fixMatchEma = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_EMA") ?? "0");
        if (inits.Length == 0 || inits.Any(i => i is not ("random" or "pretrained")))
            throw new ArgumentException("MEDFORMER_PAYS_INITS: a comma-separated list of random and pretrained");
        string? modelDir = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_MODEL");
        string? configPath = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_CONFIG");
        var report = new BenchReport("pays");

        double pretrainSeconds = 0, pretrainCpuSeconds = 0;
        if (string.IsNullOrEmpty(modelDir))
        {
            if (string.IsNullOrEmpty(configPath))
                throw new ArgumentException("set MEDFORMER_PAYS_CONFIG (a run config) or MEDFORMER_PAYS_MODEL (a pretrained model folder)");
            string output = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_OUT") ?? Directory.CreateTempSubdirectory("medformer-pays-").FullName;
            var clock = Stopwatch.StartNew();
            var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
            var result = PretrainJob.Run(RunConfig.Load(configPath), output,
                log: entry =>
                    Console.WriteLine($"  pretrain step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                        $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F4}"))}) {entry.SamplesPerSecond:F0} samples/s"));
            pretrainSeconds = clock.Elapsed.TotalSeconds;
            // CPU time is the budget the issue states ("30 CPU-minutes"); wall time stretches on a shared machine.
            pretrainCpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
            modelDir = result.Training.ModelDirectory;
            Console.WriteLine($"  pretrained in {pretrainSeconds:F0} s ({pretrainCpuSeconds / 60:F1} CPU-minutes): {modelDir}");
        }
        var config = Checkpoint.ReadConfig(modelDir);

        using var train = MnistCorpus.Open(folder, "train");
        using var test = MnistCorpus.Open(folder, "test");
        var (testImages, testLabels, testMetas) = Stack(test, [.. Enumerable.Range(0, (int)test.Count)]);
        using var __ = testImages;
        using var _ = testLabels;
        var trainLabels = Enumerable.Range(0, (int)train.Count).Select(i => Label(train, i)).ToArray();

        var rows = new Dictionary<string, List<double>>();
        void Record(string row, int seed, double accuracy)
        {
            (rows.TryGetValue(row, out var list) ? list : rows[row] = []).Add(accuracy);
            Console.WriteLine($"  seed {seed}: {row}: {accuracy:P2}");
        }
        for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
        {
            int[] picked = FewLabels.Fraction(trainLabels, fraction, seed);
            var (images, labels, metas) = Stack(train, picked);
            using (images)
            using (labels)
            using (var subset = new TensorCorpus("fashion-mnist/labelled", images, labels))
            {
                using (var pixelsTrain = images.flatten(1))
                using (var pixelsTest = testImages.flatten(1))
                    Record("linear model on raw pixels", seed, LinearProbe.Fit(pixelsTrain, labels, pixelsTest, testLabels, 10,
                        weightDecay: 1e-2).TestAccuracy);
                foreach (bool pretrained in inits.Select(i => i == "pretrained"))
                {
                    string name = pretrained ? "pretrained" : "random init";
                    Record($"{name}: linear probe", seed, Probe(Encoder(config, modelDir, pretrained, seed), subset, testImages, testLabels, testMetas));
                    using var tuner = FineTune(Encoder(config, modelDir, pretrained, seed), subset, steps, lr, seed, smoothing, strategy);
                    Record($"{name}: fine-tuned", seed, Accuracy(tuner, testImages, testLabels, testMetas));
                    var unlabelledImages = new SubsetCorpus(train, [.. Enumerable.Range(0, (int)train.Count).Except(picked).Select(i => (long)i)],
                        "fashion-mnist/unlabelled");
                    if (fixMatchSpec is not null)
                    {
                        var fixMatchBefore = Process.GetCurrentProcess().TotalProcessorTime;
                        using var fresh = fixMatchStart == "pretrained"
                            ? new FineTuner(Encoder(config, modelDir, pretrained, seed), new ClassificationHead(config, 10, pooling: Pooling.Flatten,
                                labelSmoothing: smoothing, task: Task), strategy)
                            : null;
                        var semi = fresh ?? tuner;
                        semi.FixMatch(subset, unlabelledImages, fixMatch, Options(long.Parse(fixMatchSpec[0]), lr, seed) with { Ema = fixMatchEma },
                            log: entry =>
                                Console.WriteLine($"  fixmatch step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                                    $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))})"));
                        fixMatchCpuMinutes.Add((Process.GetCurrentProcess().TotalProcessorTime - fixMatchBefore).TotalMinutes);
                        Console.WriteLine($"  seed {seed}: FixMatch {fixMatchCpuMinutes[^1]:F1} CPU-minutes");
                        Record($"{name}: FixMatch", seed, Accuracy(semi, testImages, testLabels, testMetas));
                    }
                    if (selfTrain is null || !pretrained) continue;
                    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                    // A fourth field "pretrained": the student starts again from the pretrained weights (Noisy Student); else from the teacher's.
                    using var student = selfTrain is { Length: > 3 } && selfTrain[3] == "pretrained"
                        ? new FineTuner(Encoder(config, modelDir, pretrained, seed), new ClassificationHead(config, 10, pooling: Pooling.Flatten,
                            labelSmoothing: smoothing, task: Task), strategy)
                        : null;
                    var result = tuner.SelfTrain(subset, unlabelledImages, selfTraining, Options(selfTrainSteps, lr, seed), student: student);
                    selfTrainCpuMinutes.Add((Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMinutes);
                    Console.WriteLine($"  seed {seed}: {result.Rounds[^1].PseudoLabelled} pseudo-labels, {selfTrainCpuMinutes[^1]:F1} CPU-minutes");
                    Record($"{name}: self-trained", seed, Accuracy(student ?? tuner, testImages, testLabels, testMetas));
                }
            }
        }
        foreach (var (row, values) in rows)
        {
            double mean = values.Average() * 100, std = Std(values) * 100;
            report.Add(new BenchRow(row, mean, null,
                $"% test accuracy, mean ± {std:F1} over {values.Count} seeds ({string.Join(", ", values.Select(v => (v * 100).ToString("F1")))})"));
        }
        if (rows.TryGetValue("pretrained: fine-tuned", out var tuned) && rows.TryGetValue("random init: fine-tuned", out var scratch))
            report.Headline(report.Add(new BenchRow("fine-tuned: pretrained vs random init", tuned.Average() * 100, scratch.Average() * 100,
                "% test accuracy")));
        report.Extra("fraction", fraction);
        report.Extra("fine_tune_steps", steps);
        report.Extra("label_smoothing", smoothing);
        report.Extra("strategy", strategy.ToString());
        if (selfTrain is not null)
        {
            report.Extra("self_training",
                $"{selfTrainSteps} steps, threshold {selfTraining.Threshold}, unlabelled share {selfTraining.UnlabelledShare}, student from " +
                    $"{(selfTrain is { Length: > 3 } ? selfTrain[3] : "teacher")}, " +
                        $"{(selfTraining.Augment is null ? "fine-tuning's augmentation" : "strong augmentation")}, {selfTraining.Rounds} round(s)");
            report.Extra("self_training_cpu_minutes", Math.Round(selfTrainCpuMinutes.Average(), 1));
        }
        if (fixMatchSpec is not null)
        {
            report.Extra("fixmatch",
                $"{fixMatchSpec[0]} steps, threshold {fixMatch.Threshold}, μ {fixMatch.UnlabelledRatio}, λ_u {fixMatch.Weight}, from the " +
                    $"{fixMatchStart} model, EMA {fixMatchEma}");
            report.Extra("fixmatch_cpu_minutes", Math.Round(fixMatchCpuMinutes.Average(), 1));
        }
        report.Extra("pretrain_seconds", Math.Round(pretrainSeconds));
        report.Extra("pretrain_cpu_minutes", Math.Round(pretrainCpuSeconds / 60, 1));
        report.Extra("model", modelDir);
        report.Extra("issue_rows_pytorch", "scratch Perceiver 66.4, +SimCLR 68.0, +inpainting 72.2, 3-layer CNN 76.4, linear on pixels 78.1");
        return report;
    }

    /// <summary>
    /// The task bank the probe and the head select (MEDFORMER_PAYS_TASK; "classification", whose latents pretraining
    /// never trained, or e.g. "inpainting", whose it did).
    /// </summary>
    static string Task => Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TASK") is { Length: > 0 } task ? task : "classification";

    internal static MedformerModel Encoder(MedformerConfig config, string modelDir, bool pretrained, int seed)
    {
        if (pretrained) return Checkpoint.Load(modelDir);
        Seeding.SeedEverything(1000 + seed);
        return new MedformerModel(config);
    }

    internal static double Probe(MedformerModel model, ICorpus subset, Tensor testImages, Tensor testLabels, IReadOnlyList<SampleMeta> testMetas)
    {
        using (model)
        {
            var loader = new DataLoader([new LoaderSource(subset)], new LoaderOptions(256, Workers: 1));
            var (trainX, trainY) = LinearProbe.Features(model, loader.Pass(), Task, flatten: true);
            var (testX, testY) = LinearProbe.Features(model, Batches(testImages, testMetas), Task, flatten: true);
            using (trainX)
            using (trainY)
            using (testX)
            using (testY)
                return LinearProbe.Fit(trainX, trainY, testX, testLabels, 10, weightDecay: 1e-2).TestAccuracy;
        }
    }

    /// <summary>A fine-tuned classifier with a flattened-latent head; the caller owns it.</summary>
    internal static FineTuner FineTune(MedformerModel model, ICorpus subset, long steps, double lr, int seed, double labelSmoothing = 0,
        Strategy? strategy = null)
    {
        var tuner = new FineTuner(model, new ClassificationHead(model.Config, 10, pooling: Pooling.Flatten, labelSmoothing: labelSmoothing, task: Task),
            strategy);
        try
        {
            tuner.Fit(subset, Options(steps, lr, seed));
            return tuner;
        }
        catch
        {
            tuner.Dispose();
            throw;
        }
    }

    /// <summary>The fine-tuning recipe: crops and flips, warmup then cosine, bf16 (MEDFORMER_PAYS_PRECISION).</summary>
    internal static FineTuneOptions Options(long steps, double lr, int seed) => new()
    {
        MaxSteps = steps, LearningRate = lr, WarmupSteps = Math.Min(20, steps / 5), Seed = seed, LogEvery = (int)Math.Min(steps, 100),
        Precision = PrecisionNames.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_PRECISION") ?? "bf16"),
        Mixup = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_MIXUP") ?? "0"),
        Augment = new Compose([new RandResizedCrop([28, 28], MinScale: 0.7), new RandFlip(0.5, [1])]),
    };

    /// <summary>Noisy Student's kind of noise for 28×28 grey images: wider crops, small affine warps, contrast and noise.</summary>
    static ITransform StrongAugment => new Compose([
        new RandResizedCrop([28, 28], MinScale: 0.5), new RandFlip(0.5, [1]),
        new RandAffine(0.5, RotateRange: [0.25], ScaleRange: [0.15], TranslateRange: [3, 3], PaddingMode: GridSamplePaddingMode.Zeros),
        new RandAdjustContrast(0.3, 0.7, 1.5), new RandGaussianNoise(0.3, Std: 0.05),
    ]);

    internal static double Accuracy(FineTuner tuner, Tensor testImages, Tensor testLabels, IReadOnlyList<SampleMeta> testMetas)
    {
        using var probabilities = tuner.Predict(testImages, testMetas);
        using var predicted = probabilities.argmax(1);
        return predicted.eq(testLabels).to(ScalarType.Float64).mean().item<double>();
    }

    internal static long Label(ICorpus corpus, int index)
    {
        using var sample = corpus.Get(index);
        return sample.Meta.Labels[0];
    }

    internal static (Tensor Images, Tensor Labels, IReadOnlyList<SampleMeta> Metas) Stack(ICorpus corpus, int[] indices)
    {
        var images = new List<Tensor>();
        var metas = new List<SampleMeta>();
        foreach (int i in indices)
        {
            using var sample = corpus.Get(i);
            images.Add(sample.Image.clone());
            metas.Add(sample.Meta);
        }
        var stacked = stack(images);
        foreach (var t in images) t.Dispose();
        return (stacked, tensor(metas.Select(m => m.Labels[0]).ToArray()), metas);
    }

    internal static IEnumerable<Batch> Batches(Tensor images, IReadOnlyList<SampleMeta> metas)
    {
        for (int start = 0; start < metas.Count; start += 500)
        {
            int count = Math.Min(500, metas.Count - start);
            yield return new Batch(start, [new BatchView(images.narrow(0, start, count).clone(), null, null)], [.. metas.Skip(start).Take(count)]);
        }
    }

    internal static double Std(List<double> values)
    {
        if (values.Count < 2) return 0;
        double mean = values.Average();
        return Math.Sqrt(values.Sum(v => (v - mean) * (v - mean)) / (values.Count - 1));
    }
}
