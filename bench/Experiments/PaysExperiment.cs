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
        var settings = PaysSettings.FromEnvironment(data.Spatial);
        var report = new BenchReport("pays");
        var start = StartingModel(settings, data);
        var (testImages, testLabels, testMetas) = Stack(data.Test, [.. Enumerable.Range(0, (int)data.Test.Count)]);
        using var __ = testImages;
        using var _ = testLabels;
        var run = new PaysRun(settings, data, start.Config, start.ModelDir, testImages, testLabels, testMetas);
        foreach (double fraction in settings.Fractions)
            for (int seed = settings.FirstSeed; seed < settings.FirstSeed + settings.Seeds; seed++)
                run.Score(fraction, seed);
        AddAccuracies(report, run.Table, settings.Fractions);
        string tablePath = WriteTable(run.Table, settings, start);
        AddSettings(report, data, settings, tablePath);
        AddSemiSupervised(report, settings, run);
        report.Extra("pretrain_seconds", Math.Round(start.PretrainSeconds));
        report.Extra("pretrain_cpu_minutes", Math.Round(start.PretrainCpuSeconds / 60, 1));
        if (start.ModelDir is not null) report.Extra("model", start.ModelDir);
        if (start.Config is not null) report.Extra("stem", start.Config.Stem);
        return report;
    }

    /// <summary>The Medformer the random and pretrained rows start from, and what pretraining it here cost (0 when it was not).</summary>
    sealed record StartingPoint(MedformerConfig? Config, string? ModelDir, double PretrainSeconds, double PretrainCpuSeconds);

    /// <summary>
    /// MEDFORMER_PAYS_MODEL's model; else, when a pretrained row asks for one, a model pretrained here with
    /// MEDFORMER_PAYS_CONFIG; else (random rows alone) that config's architecture. No Medformer row: no config.
    /// </summary>
    static StartingPoint StartingModel(PaysSettings settings, PaysData data)
    {
        string? modelDir = settings.ModelDir;
        double pretrainSeconds = 0, pretrainCpuSeconds = 0;
        MedformerConfig? config = null;
        if (settings.Inits.Length > 0 && string.IsNullOrEmpty(modelDir))
        {
            if (string.IsNullOrEmpty(settings.ConfigPath))
                throw new ArgumentException("MEDFORMER_PAYS_CONFIG: set it (a run config) or MEDFORMER_PAYS_MODEL (a pretrained model folder)");
            var runConfig = data.RunConfigFor(RunConfig.Load(settings.ConfigPath), settings.Output);
            if (settings.Inits.Contains("pretrained"))
                (modelDir, pretrainSeconds, pretrainCpuSeconds) = Pretrain(runConfig, settings.Output);
            else
                config = MedformerConfig.Resolve(runConfig.Model);
        }
        if (!string.IsNullOrEmpty(modelDir)) config = Checkpoint.ReadConfig(modelDir);
        return new StartingPoint(config, modelDir, pretrainSeconds, pretrainCpuSeconds);
    }

    /// <summary>Pretrains into <paramref name="output"/>/pretrain; the model's folder, the wall seconds and the CPU seconds it took.</summary>
    static (string ModelDir, double Seconds, double CpuSeconds) Pretrain(RunConfig runConfig, string output)
    {
        var clock = Stopwatch.StartNew();
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var result = PretrainJob.Run(runConfig, Path.Combine(output, "pretrain"),
            log: entry =>
                Console.WriteLine($"  pretrain step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                    $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F4}"))}) {entry.SamplesPerSecond:F0} samples/s"));
        double seconds = clock.Elapsed.TotalSeconds;
        // CPU time is the budget the issue states ("30 CPU-minutes"); wall time stretches on a shared machine.
        double cpuSeconds = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds;
        string modelDir = result.Training.ModelDirectory;
        Console.WriteLine($"  pretrained in {seconds:F0} s ({cpuSeconds / 60:F1} CPU-minutes): {modelDir}");
        return (modelDir, seconds, cpuSeconds);
    }

    /// <summary>
    /// A row per table row and fraction (the mean over the seeds); the headline: pretrained against from scratch,
    /// both fine-tuned, at the first fraction.
    /// </summary>
    static void AddAccuracies(BenchReport report, PaysTable table, double[] fractions)
    {
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
    }

    /// <summary>Writes the Markdown table (MEDFORMER_PAYS_TABLE, else pays.md in the output folder) and prints it; returns its path.</summary>
    static string WriteTable(PaysTable table, PaysSettings settings, StartingPoint start)
    {
        string markdown = table.Markdown(PaysTable.Command(Environment.GetEnvironmentVariables()), start.PretrainCpuSeconds / 60,
            start.Config?.Stem ?? "patch");
        string tablePath = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TABLE") is { Length: > 0 } t ? t : Path.Combine(settings.Output, "pays.md");
        File.WriteAllText(tablePath, markdown);
        Console.WriteLine();
        Console.WriteLine(markdown);
        Console.WriteLine($"  table written to {tablePath}");
        return tablePath;
    }

    static void AddSettings(BenchReport report, PaysData data, PaysSettings settings, string tablePath)
    {
        report.Extra("data", data.ToString());
        report.Extra("table", tablePath);
        report.Extra("fractions", string.Join(",", settings.Fractions));
        report.Extra("fine_tune_steps", settings.Steps);
        report.Extra("label_smoothing", settings.Smoothing);
        report.Extra("strategy", settings.Strategy.ToString());
    }

    /// <summary>The self-training and FixMatch settings, where they ran, and their mean CPU-minutes.</summary>
    static void AddSemiSupervised(BenchReport report, PaysSettings settings, PaysRun run)
    {
        var selfTraining = settings.SelfTraining;
        if (settings.SelfTrain is { } selfTrain)
        {
            report.Extra("self_training",
                $"{settings.SelfTrainSteps} steps, threshold {selfTraining.Threshold}, unlabelled share {selfTraining.UnlabelledShare}, student from " +
                    $"{(selfTrain is { Length: > 3 } ? selfTrain[3] : "teacher")}, " +
                        $"{(selfTraining.Augment is null ? "fine-tuning's augmentation" : "strong augmentation")}, {selfTraining.Rounds} round(s)");
            if (run.SelfTrainCpuMinutes.Count > 0) report.Extra("self_training_cpu_minutes", Math.Round(run.SelfTrainCpuMinutes.Average(), 1));
        }
        var fixMatch = settings.FixMatch;
        if (settings.FixMatchSpec is { } fixMatchSpec)
        {
            report.Extra("fixmatch",
                $"{fixMatchSpec[0]} steps, threshold {fixMatch.Threshold}, μ {fixMatch.UnlabelledRatio}, λ_u {fixMatch.Weight}, from the " +
                    $"{settings.FixMatchStart} model, EMA {settings.FixMatchEma}");
            if (run.FixMatchCpuMinutes.Count > 0) report.Extra("fixmatch_cpu_minutes", Math.Round(run.FixMatchCpuMinutes.Average(), 1));
        }
    }

    /// <summary>
    /// The task bank the probe and the head select (MEDFORMER_PAYS_TASK; "classification", whose latents pretraining
    /// never trained, or e.g. "inpainting", whose it did).
    /// </summary>
    internal static string Task => Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TASK") is { Length: > 0 } task ? task : "classification";

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
