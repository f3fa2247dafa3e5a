using System.Diagnostics;
using System.Globalization;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Transforms;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Pretrain;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run brainfuse</c>: issue 31's table. On each data set (the embedded 3D phantom, and Fashion-MNIST where
/// Debian's dataset-fashion-mnist is installed; skipped with a line where not), for each seed: draw a few labels per
/// class, fine-tune <c>tiny</c> with a flattened-latent classification head and score top-1/3/5 accuracy on the test
/// split, in six rows: normal (random init), + Barlow Twins pretraining (on the training split without labels), then
/// from that pretrained model + BrainFuse (smooth spatial weights), + raw BrainFuse (one Dirichlet weight per part),
/// and each + consistency (λ). The BrainFuse rows mix in fine-tuning (<see cref="FineTuneOptions.BrainFuse"/>); with
/// MEDFORMER_BRAINFUSE_PRETRAIN=1 their Barlow Twins pretraining mixes its views the same way too (the run config's
/// brainfuse). Pretrained models and finished cells are kept in MEDFORMER_BRAINFUSE_OUT, so a rerun continues where
/// it stopped. Settings: MEDFORMER_BRAINFUSE_DATA (phantom3d,fashion-mnist), _STEPS (pretraining, 600), _FT_STEPS
/// (fine-tuning, 300), _SEEDS (3), _FRACTION (of the training labels, 0.05 on the phantom's 1,000 volumes, 0.01 on
/// Fashion-MNIST: 60 per class), _SIZE (the phantom's volume side, 28), _TEST (test samples scored, all), _BATCH
/// (32), _PARTS (2), _ALPHA (1), _SHARE (0.5), _CONSISTENCY (λ, 1), _PRECISION (the trainer's default, fp32: <c>tiny</c> trains
/// faster in it). An experiment: no PyTorch reference.
/// </summary>
public static class BrainFuseExperiment
{
    static readonly string[] Rows = ["normal", "+ Barlow Twins", "+ BrainFuse", "+ raw BrainFuse", "+ BrainFuse + consistency",
        "+ raw BrainFuse + consistency"];

    /// <summary>The reference table (top-1/3/5), as the issue quotes it.</summary>
    static readonly double[][] Reference = [[32.1, 53.8, 64.2], [40.1, 62.8, 73.0], [50.1, 71.2, 82.9], [45.1, 67.5, 80.0], [51.4, 72.1, 83.8], [46.6, 68.8,
        81.1]];

    sealed record Cell(string Data, string Row, int Seed, double Top1, double Top3, double Top5, double CpuSeconds);

    sealed record Settings(long Steps, long FineTuneSteps, int Seeds, int Size, int Test, int Batch, int Parts, double Alpha, double Share, double Consistency,
        bool PretrainMixes, Precision Precision)
    {
        public string Tag => string.Create(CultureInfo.InvariantCulture,
            $"{Steps}-{FineTuneSteps}-{Size}-{Batch}-{Parts}-{Alpha}-{Share}-{Consistency}{(PretrainMixes ? "-pm" : "")}");
    }

    static string Env(string key, string fallback) => Environment.GetEnvironmentVariable($"MEDFORMER_BRAINFUSE_{key}") is { Length: > 0 } v ? v : fallback;

    public static BenchReport Run(BenchOptions options)
    {
        var data = Env("DATA", "phantom3d,fashion-mnist").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var settings = new Settings(
            long.Parse(Env("STEPS", "600"), CultureInfo.InvariantCulture), long.Parse(Env("FT_STEPS", "300"), CultureInfo.InvariantCulture),
            int.Parse(Env("SEEDS", "3"), CultureInfo.InvariantCulture), int.Parse(Env("SIZE", "28"), CultureInfo.InvariantCulture),
            int.Parse(Env("TEST", "0"), CultureInfo.InvariantCulture), int.Parse(Env("BATCH", "32"), CultureInfo.InvariantCulture),
            int.Parse(Env("PARTS", "2"), CultureInfo.InvariantCulture), double.Parse(Env("ALPHA", "1"), CultureInfo.InvariantCulture),
            double.Parse(Env("SHARE", "0.5"), CultureInfo.InvariantCulture), double.Parse(Env("CONSISTENCY", "1"), CultureInfo.InvariantCulture),
            Env("PRETRAIN", "0") == "1", PrecisionNames.Parse(Env("PRECISION", new FineTuneOptions().Precision.Name())));
        foreach (string d in data)
            if (d is not ("phantom3d" or "fashion-mnist"))
                throw new ArgumentException($"MEDFORMER_BRAINFUSE_DATA: unknown data set '{d}' (phantom3d, fashion-mnist)");
        new BrainFuseOptions { Parts = settings.Parts, Alpha = settings.Alpha, Share = settings.Share, Consistency = settings.Consistency }.Validate();
        string root = Env("OUT", Path.Combine(Path.GetTempPath(), "medformer-brainfuse"));
        Directory.CreateDirectory(root);
        Console.WriteLine($"  results and models in {root}");
        string cellsFile = Path.Combine(root, $"cells-{settings.Tag}.jsonl");
        var cells = JsonLines.Read<Cell>(cellsFile);
        var report = new BenchReport("brainfuse");
        var pretrainMinutes = new Dictionary<string, double>();
        foreach (string name in data)
        {
            if (name == "fashion-mnist" && !Directory.Exists(MnistCorpus.FashionMnistFolder))
            {
                Console.WriteLine($"  fashion-mnist: skipped, {MnistCorpus.FashionMnistFolder} is absent (apt-get install dataset-fashion-mnist)");
                continue;
            }
            RunData(name, settings, root, cells, cellsFile, pretrainMinutes);
            Table(name, settings, cells, report);
        }
        foreach (var (arm, minutes) in pretrainMinutes) report.Extra($"pretrain_cpu_minutes_{arm}", Math.Round(minutes, 1));
        report.Extra("settings", settings.Tag + (settings.PretrainMixes ? " (BrainFuse rows pretrain with mixes too)" : " (BrainFuse in fine-tuning)"));
        report.Extra("fine_tune_cpu_minutes", Math.Round(cells.Sum(c => c.CpuSeconds) / 60, 1));
        report.Extra("reference_table",
            "normal 32.1/53.8/64.2; +BT 40.1/62.8/73.0; +BrainFuse 50.1/71.2/82.9; +raw 45.1/67.5/80.0; +BrainFuse+consistency " +
                "51.4/72.1/83.8; +raw+consistency 46.6/68.8/81.1");
        return report;
    }

    static void RunData(string name, Settings s, string root, List<Cell> cells, string cellsFile, Dictionary<string, double> pretrainMinutes)
    {
        bool volume = name == "phantom3d";
        var spec = PhantomSpec.Default3d with { Size = s.Size };
        var train = volume ? (ICorpus)Phantom.Open(spec, "train") : MnistCorpus.Open(MnistCorpus.FashionMnistFolder, "train");
        using var trainOwner = train as IDisposable;
        var test = volume ? (ICorpus)Phantom.Open(spec, "test") : MnistCorpus.Open(MnistCorpus.FashionMnistFolder, "test");
        using var testOwner = test as IDisposable;
        int testCount = s.Test > 0 ? (int)Math.Min(s.Test, test.Count) : (int)test.Count;
        var (testImages, testLabels, testMetas) = PaysExperiment.Stack(test, [.. Enumerable.Range(0, testCount)]);
        using var _ = testImages;
        using var __ = testLabels;
        var trainLabels = Enumerable.Range(0, (int)train.Count).Select(i => PaysExperiment.Label(train, i)).ToArray();
        double fraction = double.Parse(Env("FRACTION", volume ? "0.05" : "0.01"), CultureInfo.InvariantCulture);
        var corpus = volume ? new CorpusEntry { Phantom = "3d", Size = s.Size } : new CorpusEntry { Mnist = MnistCorpus.FashionMnistFolder };
        string Pretrained(bool mixes, bool raw) => Pretrain(name, corpus, volume, s, mixes, raw, root, pretrainMinutes);
        for (int seed = 0; seed < s.Seeds; seed++)
        {
            var (images, labels, _) = PaysExperiment.Stack(train, FewLabels.Fraction(trainLabels, fraction, seed));
            using (images)
            using (labels)
            using (var subset = new TensorCorpus($"{name}/labelled", images, labels))
                for (int r = 0; r < Rows.Length; r++)
                {
                    string row = Rows[r];
                    if (cells.Any(c => c.Data == name && c.Row == row && c.Seed == seed)) continue;
                    bool raw = row.Contains("raw"), fused = r >= 2, consistency = row.Contains("consistency");
                    string? modelDir = r == 0 ? null : Pretrained(fused && s.PretrainMixes, raw);
                    var fuse = fused ? new BrainFuseOptions
                    {
                        Parts = s.Parts, Alpha = s.Alpha, Share = s.Share, Weights = raw ? MixWeights.Dirichlet : MixWeights.Spatial,
                        Consistency = consistency ? s.Consistency : 0,
                    } : null;
                    var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
                    var model = modelDir is null ? PaysExperiment.Encoder(MedformerConfig.Tiny, "", false, seed) : PaysExperiment.Encoder(MedformerConfig.Tiny,
                        modelDir, true, seed);
                    using var tuner = new FineTuner(model, new ClassificationHead(model.Config, 10, pooling: Pooling.Flatten));
                    tuner.Fit(subset, FineTune(s, volume, seed, fuse));
                    var (top1, top3, top5) = TopK(tuner, testImages, testLabels, testMetas);
                    var cell = new Cell(name, row, seed, top1, top3, top5, (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalSeconds);
                    cells.Add(cell);
                    JsonLines.Append(cellsFile, cell);
                    Console.WriteLine($"  {name}, seed {seed}, {row}: top-1 {top1:P1}, top-3 {top3:P1}, top-5 {top5:P1} ({cell.CpuSeconds:F0} CPU-s)");
                }
        }
    }

    static FineTuneOptions FineTune(Settings s, bool volume, int seed, BrainFuseOptions? fuse) => new()
    {
        MaxSteps = s.FineTuneSteps, BatchSize = s.Batch, LearningRate = 1e-3, WarmupSteps = Math.Min(20, s.FineTuneSteps / 5), Seed = seed,
        LogEvery = (int)Math.Min(s.FineTuneSteps, 100), Precision = s.Precision, Workers = 1, BrainFuse = fuse,
        Augment = volume ? new RandFlip(0.5, [2]) : new Compose([new RandResizedCrop([28, 28], MinScale: 0.7), new RandFlip(0.5, [1])]),
    };

    /// <summary>Barlow Twins on the training split without labels (its views BrainFuse mixes where asked); a finished model is reused.</summary>
    static string Pretrain(string name, CorpusEntry corpus, bool volume, Settings s, bool mixes, bool raw, string root, Dictionary<string, double> cpuMinutes)
    {
        string arm = mixes ? $"barlow-brainfuse{(raw ? "-raw" : "")}" : "barlow";
        string output = Path.Combine(root, $"{name}-{arm}-{s.Steps}-{s.Size}");
        string modelDir = Path.Combine(output, "model");
        if (File.Exists(Path.Combine(modelDir, Checkpoint.WeightsFile))) return modelDir;
        var defaults = new RunConfig();
        var config = defaults with
        {
            Corpora = [corpus],
            Objectives = new() { ["barlow"] = new ObjectiveSpec { Weight = 1.0 } },
            LogEvery = (int)Math.Max(1, s.Steps / 5),
            CheckpointEvery = 0,
            Precision = s.Precision.Name(),
            Brainfuse = mixes
                ? new BrainFuseSpec { Parts = s.Parts, Alpha = s.Alpha, Share = s.Share, Weights = raw ? "dirichlet" : "smooth", Consistency = s.Consistency }
                : null,
            Schedule = defaults.Schedule with { MaxSteps = s.Steps, WarmupSteps = Math.Min(defaults.Schedule.WarmupSteps, s.Steps / 10) },
            Batch = defaults.Batch with { Size = s.Batch, Workers = 1 },
            Augment = volume ? defaults.Augment with { VolumeSize = s.Size } : defaults.Augment,
        };
        config.Validate("bench brainfuse");
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var result = PretrainJob.Run(config, output,
            log: entry =>
                Console.WriteLine($"  {name} {arm} step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                    $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))})"));
        cpuMinutes[$"{name}_{arm}"] = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMinutes;
        return result.Training.ModelDirectory;
    }

    /// <summary>Top-1, top-3 and top-5 accuracy of the tuner's probabilities on the test images.</summary>
    static (double, double, double) TopK(FineTuner tuner, Tensor images, Tensor labels, IReadOnlyList<SampleMeta> metas)
    {
        using var scope = NewDisposeScope();
        var probabilities = tuner.Predict(images, metas);
        var (_, top) = probabilities.topk(5, dim: 1);
        var hits = top.eq(labels.unsqueeze(1)).to(ScalarType.Float64);                  // [N,5], one hit at most per row
        double At(int k) => hits.narrow(1, 0, k).sum(1).mean().item<double>();
        return (At(1), At(3), At(5));
    }

    static void Table(string name, Settings s, List<Cell> cells, BenchReport report)
    {
        Console.WriteLine();
        Console.WriteLine($"| {name}: tiny, {s.Steps} Barlow steps, {s.FineTuneSteps} fine-tuning steps | top-1 | top-3 | top-5 | " +
            "reference top-1/3/5 | CPU-s per run |");
        Console.WriteLine("| --- | --- | --- | --- | --- | --- |");
        for (int r = 0; r < Rows.Length; r++)
        {
            var mine = cells.Where(c => c.Data == name && c.Row == Rows[r]).ToList();
            if (mine.Count == 0) continue;
            string Cell(Func<Cell, double> pick)
            {
                var values = mine.Select(pick).ToList();
                return $"{values.Average() * 100:F1} ± {PaysExperiment.Std(values) * 100:F1}";
            }
            Console.WriteLine($"| {Rows[r]} | {Cell(c => c.Top1)} | {Cell(c => c.Top3)} | {Cell(c => c.Top5)} | " +
                $"{string.Join("/", Reference[r].Select(v => v.ToString("F1", CultureInfo.InvariantCulture)))} | {mine.Average(c => c.CpuSeconds):F0} |");
            var top1 = mine.Select(c => c.Top1).ToList();
            report.Add(new BenchRow($"{name} {Rows[r]} top-1", top1.Average() * 100, Reference[r][0],
                $"% test top-1 accuracy, mean ± {PaysExperiment.Std(top1) * 100:F1} over {mine.Count} seeds (reference: the issue's table, another data set)"));
        }
        Console.WriteLine();
    }
}
