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
/// <c>bench/run pays</c>: does pretraining pay? (issues 13 and 32.) On any data (MEDFORMER_PAYS_DATA, see
/// <see cref="PaysData"/>: an MNIST-layout folder, a MedMNIST .npz or the phantom; Fashion-MNIST by default): pretrain
/// Medformer on the training images without labels (a run config, MEDFORMER_PAYS_CONFIG, whose corpora become the
/// data; MEDFORMER_PAYS_PRETRAIN_STEPS, MEDFORMER_PAYS_STEM "patch" or "conv" and MEDFORMER_PAYS_STEM_CHANNELS
/// override its schedule and tokenizer; or an already pretrained model folder, MEDFORMER_PAYS_MODEL), then, for each
/// label fraction (MEDFORMER_PAYS_FRACTIONS, "0.01,0.1") and seed, draw that share of the training labels
/// (<see cref="FewLabels"/>) and score on the test split: a linear model on raw pixels (linear), a small CNN from
/// scratch (cnn, <see cref="SmallCnn"/>), and Medformer from scratch (random) and pretrained (pretrained), each by a
/// linear probe on frozen flattened latents (MEDFORMER_PAYS_PROBE=0 skips it) and by fine-tuning everything with a
/// flattened-latent head through the trainer; MEDFORMER_PAYS_METHODS ("linear,cnn,random,pretrained") picks them
/// (MEDFORMER_PAYS_INITS, the older key, the Medformer ones beside linear and cnn). Writes one Markdown table
/// (MEDFORMER_PAYS_TABLE, else pays.md in MEDFORMER_PAYS_OUT) with the command that reproduces each row.
/// MEDFORMER_PAYS_SEEDS (3; MEDFORMER_PAYS_FIRST_SEED, 0, to split seeds over processes), MEDFORMER_PAYS_STEPS (fine-tuning steps, 1000; the CNN's too),
/// MEDFORMER_PAYS_LR (1e-3), MEDFORMER_PAYS_SMOOTHING (label smoothing, 0), MEDFORMER_PAYS_MIXUP (mixup's α, 0), MEDFORMER_PAYS_STRATEGY (full, llrd:D, …).
/// MEDFORMER_PAYS_SELF_TRAIN=STEPS[:THRESHOLD[:SHARE[:STUDENT]]] adds a row: the fine-tuned model pseudo-labels the
/// other training images and fine-tuning goes on STEPS more over both (<see cref="SemiSupervised.SelfTrain"/>), from
/// the teacher's weights, or from the pretrained ones with STUDENT "pretrained", with stronger augmentation as a fifth
/// field "strong", for ROUNDS rounds as a sixth (1; :STEPS:THRESHOLD:SHARE:STUDENT:AUGMENT:ROUNDS); its CPU-minutes reported.
/// MEDFORMER_PAYS_FIXMATCH=STEPS[:THRESHOLD[:RATIO[:WEIGHT[:START]]]] adds a row per Medformer init and for the CNN:
/// FixMatch (<see cref="SemiSupervised.FixMatch"/>, <see cref="CnnTrainer.FixMatch"/>) over the labelled and the other
/// training images for STEPS, τ THRESHOLD (0.95), μ RATIO (7), λ_u WEIGHT (1), from the fine-tuned model (START
/// "tuned", the default) or the pretrained one ("pretrained"; for the CNN a fresh one), with MEDFORMER_PAYS_EMA's
/// decay (0: none; Medformer only); its CPU-minutes reported. MEDFORMER_PAYS_PRECISION (bf16) is Medformer's
/// fine-tuning precision (the CNN trains in fp32). An experiment: no PyTorch reference in the run (the CNN's twin,
/// bench/reference/cnn.py, is checked in the tests).
/// </summary>
public static class PaysExperiment
{
    public static BenchReport Run(BenchOptions options)
    {
        using var data = PaysData.FromEnvironment();
        int seeds = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SEEDS") ?? "3");
        int firstSeed = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FIRST_SEED") ?? "0");
        double[] fractions = [.. (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FRACTIONS") is { Length: > 0 } list ? list
            : Environment.GetEnvironmentVariable("MEDFORMER_PAYS_FRACTION") ?? "0.01,0.1").Split(',').Select(double.Parse)];
        if (fractions.Any(f => f is <= 0 or > 1)) throw new ArgumentException("MEDFORMER_PAYS_FRACTIONS: label fractions in (0, 1], comma-separated");
        long steps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STEPS") ?? "1000");
        double lr = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_LR") ?? "1e-3");
        double smoothing = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SMOOTHING") ?? "0");
        var strategy = Strategy.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STRATEGY") ?? "full");
        // Methods: linear (a linear model on pixels), cnn (SmallCnn from scratch), random and pretrained (Medformer).
        var methods = (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_METHODS") is { Length: > 0 } m ? m
            : "linear,cnn," + (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_INITS") ?? "random,pretrained")).Split(',');
        if (methods.Length == 0 || methods.Any(x => x is not ("linear" or "cnn" or "random" or "pretrained")))
            throw new ArgumentException("MEDFORMER_PAYS_METHODS: a comma-separated list of linear, cnn, random and pretrained");
        var inits = methods.Where(x => x is "random" or "pretrained").ToArray();
        bool probe = (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_PROBE") ?? "1") != "0";
        var selfTrain = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_SELF_TRAIN") is { Length: > 0 } spec ? spec.Split(':') : null;
        long selfTrainSteps = selfTrain is null ? 0 : long.Parse(selfTrain[0]);
        var selfTraining = new SelfTrainingOptions
        {
            Threshold = selfTrain is { Length: > 1 } ? double.Parse(selfTrain[1]) : 0,
            UnlabelledShare = selfTrain is { Length: > 2 } ? double.Parse(selfTrain[2]) : 0.5,
            // A fifth field "strong": the student's noise is stronger than fine-tuning's crops and flips (Noisy Student).
            Augment = selfTrain is { Length: > 4 } && selfTrain[4] == "strong" ? StrongAugment(data.Spatial) : null,
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
        string? modelDir = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_MODEL");
        string? configPath = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_CONFIG");
        string output = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_OUT") is { Length: > 0 } o ? o
            : Directory.CreateTempSubdirectory("medformer-pays-").FullName;
        Directory.CreateDirectory(output);
        var report = new BenchReport("pays");

        double pretrainSeconds = 0, pretrainCpuSeconds = 0;
        MedformerConfig? config = null;
        if (inits.Length > 0 && string.IsNullOrEmpty(modelDir))
        {
            if (string.IsNullOrEmpty(configPath))
                throw new ArgumentException("MEDFORMER_PAYS_CONFIG: set it (a run config) or MEDFORMER_PAYS_MODEL (a pretrained model folder)");
            var runConfig = data.RunConfigFor(RunConfig.Load(configPath), output);
            if (inits.Contains("pretrained"))
            {
                var clock = Stopwatch.StartNew();
                var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                var result = PretrainJob.Run(runConfig, Path.Combine(output, "pretrain"),
                    log: entry =>
                        Console.WriteLine($"  pretrain step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                            $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F4}"))}) {entry.SamplesPerSecond:F0} samples/s"));
                pretrainSeconds = clock.Elapsed.TotalSeconds;
                // CPU time is the budget the issue states ("30 CPU-minutes"); wall time stretches on a shared machine.
                pretrainCpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
                modelDir = result.Training.ModelDirectory;
                Console.WriteLine($"  pretrained in {pretrainSeconds:F0} s ({pretrainCpuSeconds / 60:F1} CPU-minutes): {modelDir}");
            }
            else
                config = MedformerConfig.Resolve(runConfig.Model);
        }
        if (!string.IsNullOrEmpty(modelDir)) config = Checkpoint.ReadConfig(modelDir);

        var (train, test) = (data.Train, data.Test);
        var (testImages, testLabels, testMetas) = Stack(test, [.. Enumerable.Range(0, (int)test.Count)]);
        using var __ = testImages;
        using var _ = testLabels;
        var trainLabels = Enumerable.Range(0, (int)train.Count).Select(i => Label(train, i)).ToArray();
        int classes = (int)Math.Max(trainLabels.Max(), testLabels.max().item<long>()) + 1;
        Console.WriteLine($"  {data}: {train.Count} training and {test.Count} test images {string.Join("×", data.Spatial)}, {classes} classes");

        var table = new PaysTable(data.ToString(), fractions);
        var cpu = Process.GetCurrentProcess();
        void Record(string row, string method, double fraction, int seed, double accuracy, TimeSpan cpuBefore)
        {
            cpu.Refresh();
            table.Add(row, method, fraction, accuracy, (cpu.TotalProcessorTime - cpuBefore).TotalMinutes);
            Console.WriteLine($"  {fraction:P0} of the labels, seed {seed}: {row}: {accuracy:P2}");
        }
        TimeSpan Now()
        {
            cpu.Refresh();
            return cpu.TotalProcessorTime;
        }
        var fineTune = Options(steps, lr, 0, data.Spatial);
        foreach (double fraction in fractions)
            for (int seed = firstSeed; seed < firstSeed + seeds; seed++)
            {
                int[] picked = FewLabels.Fraction(trainLabels, fraction, seed);
                var (images, labels, metas) = Stack(train, picked);
                using (images)
                using (labels)
                using (var subset = new TensorCorpus($"{data.Name}/labelled", images, labels))
                {
                    var unlabelledImages = new SubsetCorpus(train, [.. Enumerable.Range(0, (int)train.Count).Except(picked).Select(i => (long)i)],
                        $"{data.Name}/unlabelled");
                    if (methods.Contains("linear"))
                    {
                        var before = Now();
                        using var pixelsTrain = images.flatten(1);
                        using var pixelsTest = testImages.flatten(1);
                        Record("linear model on raw pixels", "linear", fraction, seed, LinearProbe.Fit(pixelsTrain, labels, pixelsTest, testLabels, classes,
                            weightDecay: 1e-2).TestAccuracy, before);
                    }
                    if (methods.Contains("cnn"))
                    {
                        var before = Now();
                        Seeding.SeedEverything(2000 + seed);
                        var cnn = new CnnTrainer(new SmallCnn((int)images.shape[1], classes, data.Spatial.Length), fineTune with { Seed = seed });
                        using var cnnModel = cnn.Model;
                        cnn.Fit(subset);
                        Record("small CNN from scratch", "cnn", fraction, seed, cnn.Accuracy(testImages, testLabels), before);
                        if (fixMatchSpec is not null)
                        {
                            before = Now();
                            Seeding.SeedEverything(3000 + seed);
                            var semi = fixMatchStart == "pretrained" ? new CnnTrainer(new SmallCnn((int)images.shape[1], classes, data.Spatial.Length),
                                fineTune with { Seed = seed }) : cnn;
                            using var fresh = fixMatchStart == "pretrained" ? semi.Model : null;
                            double share = semi.FixMatch(subset, unlabelledImages, fixMatch, long.Parse(fixMatchSpec[0]), data.Spatial);
                            Console.WriteLine($"  cnn FixMatch: {share:P0} of the unlabelled images confident at the last step");
                            Record("small CNN from scratch + FixMatch", "cnn", fraction, seed, semi.Accuracy(testImages, testLabels), before);
                        }
                    }
                    foreach (bool pretrained in inits.Select(i => i == "pretrained"))
                    {
                        string name = pretrained ? "Medformer pretrained" : "Medformer from scratch";
                        string method = pretrained ? "pretrained" : "random";
                        var before = Now();
                        if (probe)
                        {
                            Record($"{name}: linear probe", method, fraction, seed, Probe(Encoder(config!, modelDir, pretrained, seed), subset, testImages,
                                testLabels, testMetas, classes), before);
                            before = Now();
                        }
                        using var tuner = FineTune(Encoder(config!, modelDir, pretrained, seed), subset, steps, lr, seed, smoothing, strategy, classes,
                            data.Spatial);
                        Record($"{name}, fine-tuned", method, fraction, seed, Accuracy(tuner, testImages, testLabels, testMetas), before);
                        if (fixMatchSpec is not null)
                        {
                            var fixMatchBefore = Now();
                            using var fresh = fixMatchStart == "pretrained"
                                ? new FineTuner(Encoder(config!, modelDir, pretrained, seed), new ClassificationHead(config!, classes, pooling: Pooling.Flatten,
                                    labelSmoothing: smoothing, task: Task), strategy)
                                : null;
                            var semi = fresh ?? tuner;
                            semi.FixMatch(subset, unlabelledImages, fixMatch, Options(long.Parse(fixMatchSpec[0]), lr, seed,
                                data.Spatial) with { Ema = fixMatchEma },
                                log: entry =>
                                    Console.WriteLine($"  fixmatch step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                                        $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))})"));
                            fixMatchCpuMinutes.Add((Now() - fixMatchBefore).TotalMinutes);
                            Console.WriteLine($"  seed {seed}: FixMatch {fixMatchCpuMinutes[^1]:F1} CPU-minutes");
                            Record($"{name}, fine-tuned + FixMatch", method, fraction, seed, Accuracy(semi, testImages, testLabels, testMetas), fixMatchBefore);
                        }
                        if (selfTrain is null || !pretrained) continue;
                        var selfBefore = Now();
                        // A fourth field "pretrained": the student starts again from the pretrained weights (Noisy Student); else from the teacher's.
                        using var student = selfTrain is { Length: > 3 } && selfTrain[3] == "pretrained"
                            ? new FineTuner(Encoder(config!, modelDir, pretrained, seed), new ClassificationHead(config!, classes, pooling: Pooling.Flatten,
                                labelSmoothing: smoothing, task: Task), strategy)
                            : null;
                        var result = tuner.SelfTrain(subset, unlabelledImages, selfTraining, Options(selfTrainSteps, lr, seed, data.Spatial), student: student);
                        selfTrainCpuMinutes.Add((Now() - selfBefore).TotalMinutes);
                        Console.WriteLine($"  seed {seed}: {result.Rounds[^1].PseudoLabelled} pseudo-labels, {selfTrainCpuMinutes[^1]:F1} CPU-minutes");
                        Record($"{name}, fine-tuned + self-training", method, fraction, seed, Accuracy(student ?? tuner, testImages, testLabels, testMetas),
                            selfBefore);
                    }
                }
            }
        foreach (var row in table.Rows)
            foreach (double fraction in fractions)
                if (row.Accuracies.TryGetValue(fraction, out var values))
                {
                    double mean = values.Average() * 100, std = Std(values) * 100;
                    report.Add(new BenchRow($"{row.Name} ({fraction:P0})", mean, null,
                        $"% test accuracy, mean ± {std:F1} over {values.Count} seeds ({string.Join(", ", values.Select(v => (v * 100).ToString("F1")))})"));
                }
        var tuned = table.Rows.FirstOrDefault(r => r.Name == "Medformer pretrained, fine-tuned");
        var scratch = table.Rows.FirstOrDefault(r => r.Name == "Medformer from scratch, fine-tuned");
        if (tuned is not null && scratch is not null && tuned.Accuracies.TryGetValue(fractions[0], out var a) && scratch.Accuracies.TryGetValue(fractions[0],
            out var b))
            report.Headline(report.Add(new BenchRow($"fine-tuned at {fractions[0]:P0}: pretrained vs from scratch", a.Average() * 100, b.Average() * 100,
                "% test accuracy")));

        string markdown = table.Markdown(PaysTable.Command(Environment.GetEnvironmentVariables()), pretrainCpuSeconds / 60, config?.Stem ?? "patch");
        string tablePath = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TABLE") is { Length: > 0 } t ? t : Path.Combine(output, "pays.md");
        File.WriteAllText(tablePath, markdown);
        Console.WriteLine();
        Console.WriteLine(markdown);
        Console.WriteLine($"  table written to {tablePath}");
        report.Extra("data", data.ToString());
        report.Extra("table", tablePath);
        report.Extra("fractions", string.Join(",", fractions));
        report.Extra("fine_tune_steps", steps);
        report.Extra("label_smoothing", smoothing);
        report.Extra("strategy", strategy.ToString());
        if (selfTrain is not null)
        {
            report.Extra("self_training",
                $"{selfTrainSteps} steps, threshold {selfTraining.Threshold}, unlabelled share {selfTraining.UnlabelledShare}, student from " +
                    $"{(selfTrain is { Length: > 3 } ? selfTrain[3] : "teacher")}, " +
                        $"{(selfTraining.Augment is null ? "fine-tuning's augmentation" : "strong augmentation")}, {selfTraining.Rounds} round(s)");
            if (selfTrainCpuMinutes.Count > 0) report.Extra("self_training_cpu_minutes", Math.Round(selfTrainCpuMinutes.Average(), 1));
        }
        if (fixMatchSpec is not null)
        {
            report.Extra("fixmatch",
                $"{fixMatchSpec[0]} steps, threshold {fixMatch.Threshold}, μ {fixMatch.UnlabelledRatio}, λ_u {fixMatch.Weight}, from the " +
                    $"{fixMatchStart} model, EMA {fixMatchEma}");
            if (fixMatchCpuMinutes.Count > 0) report.Extra("fixmatch_cpu_minutes", Math.Round(fixMatchCpuMinutes.Average(), 1));
        }
        report.Extra("pretrain_seconds", Math.Round(pretrainSeconds));
        report.Extra("pretrain_cpu_minutes", Math.Round(pretrainCpuSeconds / 60, 1));
        if (modelDir is not null) report.Extra("model", modelDir);
        if (config is not null) report.Extra("stem", config.Stem);
        return report;
    }

    /// <summary>
    /// The task bank the probe and the head select (MEDFORMER_PAYS_TASK; "classification", whose latents pretraining
    /// never trained, or e.g. "inpainting", whose it did).
    /// </summary>
    static string Task => Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TASK") is { Length: > 0 } task ? task : "classification";

    internal static MedformerModel Encoder(MedformerConfig config, string? modelDir, bool pretrained, int seed)
    {
        if (pretrained) return Checkpoint.Load(modelDir ?? throw new ArgumentException("MEDFORMER_PAYS_MODEL: no pretrained model folder"));
        Seeding.SeedEverything(1000 + seed);
        return new MedformerModel(config);
    }

    internal static double Probe(MedformerModel model, ICorpus subset, Tensor testImages, Tensor testLabels, IReadOnlyList<SampleMeta> testMetas,
        int classes = 10)
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
                return LinearProbe.Fit(trainX, trainY, testX, testLabels, classes, weightDecay: 1e-2).TestAccuracy;
        }
    }

    /// <summary>A fine-tuned classifier with a flattened-latent head; the caller owns it.</summary>
    internal static FineTuner FineTune(MedformerModel model, ICorpus subset, long steps, double lr, int seed, double labelSmoothing = 0,
        Strategy? strategy = null,
        int classes = 10, long[]? spatial = null)
    {
        var tuner = new FineTuner(model, new ClassificationHead(model.Config, classes, pooling: Pooling.Flatten, labelSmoothing: labelSmoothing, task: Task),
            strategy);
        try
        {
            tuner.Fit(subset, Options(steps, lr, seed, spatial));
            return tuner;
        }
        catch
        {
            tuner.Dispose();
            throw;
        }
    }

    /// <summary>The fine-tuning recipe: crops and flips, warmup then cosine, bf16 (MEDFORMER_PAYS_PRECISION); images of <paramref name="spatial"/> (28×28
    /// unless given).</summary>
    internal static FineTuneOptions Options(long steps, double lr, int seed, long[]? spatial = null) => new()
    {
        MaxSteps = steps, LearningRate = lr, WarmupSteps = Math.Min(20, steps / 5), Seed = seed, LogEvery = (int)Math.Min(steps, 100),
        Precision = PrecisionNames.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_PRECISION") ?? "bf16"),
        Mixup = double.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_MIXUP") ?? "0"),
        Augment = new Compose([new RandResizedCrop(spatial ?? [28, 28], MinScale: 0.7), new RandFlip(0.5, [1])]),
    };

    /// <summary>Noisy Student's kind of noise for 28×28 grey images: wider crops, small affine warps, contrast and noise.</summary>
    static ITransform StrongAugment(long[] spatial) => new Compose([
        new RandResizedCrop(spatial, MinScale: 0.5), new RandFlip(0.5, [1]),
        new RandAffine(0.5, RotateRange: [0.25], ScaleRange: [0.15], TranslateRange: [.. spatial.Select(s => s / 9.0)],
            PaddingMode: GridSamplePaddingMode.Zeros),
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
