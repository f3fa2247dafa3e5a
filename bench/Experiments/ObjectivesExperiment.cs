using System.Diagnostics;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Pretrain;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run objectives</c>: issue 13's table on the embedded corpus. For each arm (random init, each objective
/// alone, the default job's mix) pretrain <c>tiny</c> on the phantom's training split without labels, then for each
/// label fraction (1% and 10%) and seed draw that many labels per class and score the test split by a linear probe on
/// the frozen flattened latents and by fine-tuning everything (PaysExperiment's protocol). Pretrained models and
/// finished cells are kept in MEDFORMER_OBJECTIVES_OUT, so a rerun continues where it stopped.
/// MEDFORMER_OBJECTIVES_ARMS, _STEPS (pretraining, 1000), _FT_STEPS (fine-tuning, 300), _SEEDS (3), _FRACTIONS
/// (0.01,0.1) set the protocol; an arm "a+b" pretrains a mix (the first objective at weight 1, the others at 0.5).
/// An experiment: no PyTorch reference.
/// </summary>
public static class ObjectivesExperiment
{
    const string Mix = "mix";
    const string Scratch = "scratch";

    sealed record Cell(string Arm, double Fraction, int Seed, string Kind, double Accuracy);

    /// <summary>The protocol, from MEDFORMER_OBJECTIVES_*; <see cref="Root"/> holds the models and the finished cells.</summary>
    sealed record Settings(string[] Arms, long Steps, long FineTuneSteps, int Seeds, double[] Fractions, string Root);

    /// <summary>The stacked test split every cell is scored on.</summary>
    sealed record TestSplit(Tensor Images, Tensor Labels, IReadOnlyList<SampleMeta> Metas);

    /// <summary>
    /// The finished cells, kept in <paramref name="file"/> as each finishes: an interrupted run picks up where it
    /// stopped.
    /// </summary>
    sealed class CellLog(string file)
    {
        public List<Cell> Cells { get; } = JsonLines.Read<Cell>(file);

        public void Record(Cell cell)
        {
            Cells.Add(cell);
            JsonLines.Append(file, cell);
            Console.WriteLine($"  {cell.Arm}, {cell.Fraction:P0}, seed {cell.Seed}: {cell.Kind} {cell.Accuracy:P1}");
        }

        public bool Done(string arm, double fraction, int seed, string kind) =>
            Cells.Any(c => c.Arm == arm && c.Fraction == fraction && c.Seed == seed && c.Kind == kind);
    }

    public static BenchReport Run(BenchOptions options)
    {
        var settings = ReadSettings();
        Directory.CreateDirectory(settings.Root);
        Console.WriteLine($"  results and models in {settings.Root}");
        var cells = new CellLog(Path.Combine(settings.Root, $"cells-{settings.Steps}-{settings.FineTuneSteps}.jsonl"));

        using var train = Phantom.Open(PhantomSpec.Default2d, "train");
        using var test = Phantom.Open(PhantomSpec.Default2d, "test");
        var (testImages, testLabels, testMetas) = PaysExperiment.Stack(test, [.. Enumerable.Range(0, (int)test.Count)]);
        using var _ = testImages;
        using var __ = testLabels;
        var trainLabels = Enumerable.Range(0, (int)train.Count).Select(i => PaysExperiment.Label(train, i)).ToArray();
        var pretrainMinutes = new Dictionary<string, double>();
        foreach (string arm in settings.Arms)
            RunArm(arm, settings, cells, train, trainLabels, new TestSplit(testImages, testLabels, testMetas), pretrainMinutes);

        var report = new BenchReport("objectives");
        Table(report, settings, cells.Cells);
        foreach (var (arm, minutes) in pretrainMinutes) report.Extra($"pretrain_cpu_minutes_{arm}", Math.Round(minutes, 1));
        report.Extra("pretrain_steps", settings.Steps);
        report.Extra("fine_tune_steps", settings.FineTuneSteps);
        return report;
    }

    static Settings ReadSettings()
    {
        string[] arms = (Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_ARMS") ?? $"{Scratch},{string.Join(',', RunConfig.ObjectiveNames)},{Mix}")
            .Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        long steps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_STEPS") ?? "1000");
        long fineTuneSteps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_FT_STEPS") ?? "300");
        int seeds = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_SEEDS") ?? "3");
        double[] fractions = [.. (Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_FRACTIONS") ?? "0.01,0.1").Split(',').Select(double.Parse)];
        string root = Environment.GetEnvironmentVariable("MEDFORMER_OBJECTIVES_OUT") ?? Path.Combine(Path.GetTempPath(), "medformer-objectives");
        foreach (string arm in arms)
            if (arm != Scratch && arm != Mix && !arm.Split('+').All(RunConfig.ObjectiveNames.Contains))
                throw new ArgumentException($"MEDFORMER_OBJECTIVES_ARMS: unknown arm '{arm}' (known: {Scratch}, " +
                    $"{string.Join(", ", RunConfig.ObjectiveNames)}, {Mix}, or objectives joined by '+')");
        return new Settings(arms, steps, fineTuneSteps, seeds, fractions, root);
    }

    /// <summary>Pretrains the arm (or reuses its model), then probes and fine-tunes each fraction and seed not yet done.</summary>
    static void RunArm(string arm, Settings settings, CellLog cells, ICorpus train, long[] trainLabels, TestSplit test,
        Dictionary<string, double> pretrainMinutes)
    {
        string modelDir = arm == Scratch ? "" : Pretrain(arm, settings.Steps, Path.Combine(settings.Root, $"{arm}-{settings.Steps}"), pretrainMinutes);
        var config = arm == Scratch ? MedformerConfig.Tiny : Checkpoint.ReadConfig(modelDir);
        foreach (double fraction in settings.Fractions)
            for (int seed = 0; seed < settings.Seeds; seed++)
            {
                if (cells.Done(arm, fraction, seed, "probe") && cells.Done(arm, fraction, seed, "fine-tuned")) continue;
                var (images, labels, _) = PaysExperiment.Stack(train, FewLabels.Fraction(trainLabels, fraction, seed));
                using (images)
                using (labels)
                using (var subset = new TensorCorpus("phantom/labelled", images, labels))
                {
                    bool pretrained = arm != Scratch;
                    if (!cells.Done(arm, fraction, seed, "probe"))
                        cells.Record(new Cell(arm, fraction, seed, "probe",
                            PaysExperiment.Probe(PaysExperiment.Encoder(config, modelDir, pretrained, seed), subset, test.Images, test.Labels, test.Metas)));
                    if (!cells.Done(arm, fraction, seed, "fine-tuned"))
                        cells.Record(new Cell(arm, fraction, seed, "fine-tuned",
                            FineTunedAccuracy(PaysExperiment.Encoder(config, modelDir, pretrained, seed), subset, test.Images, test.Labels, test.Metas,
                                settings.FineTuneSteps, seed)));
                }
            }
    }

    /// <summary>Prints the Markdown table (mean ± std over the seeds) and adds a row for each of its cells that has results.</summary>
    static void Table(BenchReport report, Settings settings, List<Cell> cells)
    {
        Console.WriteLine();
        Console.WriteLine($"| tiny, {settings.Steps} pretraining steps | " + string.Join(" | ", settings.Fractions.SelectMany(f => new[] { $"probe {f:P0}",
            $"fine-tuned {f:P0}" })) + " |");
        Console.WriteLine("| --- |" + string.Concat(Enumerable.Repeat(" --- |", 2 * settings.Fractions.Length)));
        foreach (string arm in settings.Arms)
        {
            var line = new List<string>();
            foreach (double fraction in settings.Fractions)
                foreach (string kind in new[] { "probe", "fine-tuned" })
                {
                    var values = cells.Where(c => c.Arm == arm && c.Fraction == fraction && c.Kind == kind).Select(c => c.Accuracy).ToList();
                    if (values.Count == 0)
                    {
                        line.Add("");
                        continue;
                    }
                    double mean = values.Average() * 100, std = PaysExperiment.Std(values) * 100;
                    line.Add($"{mean:F1} ± {std:F1}");
                    report.Add(new BenchRow($"{arm} {kind} {fraction:P0}", mean, null, $"% test accuracy, mean ± {std:F1} over {values.Count} seeds"));
                }
            Console.WriteLine($"| {arm} | {string.Join(" | ", line)} |");
        }
        Console.WriteLine();
    }

    /// <summary>Pretrains <c>tiny</c> on the phantom with one objective (or the default mix); reuses a finished model.</summary>
    static string Pretrain(string arm, long steps, string output, Dictionary<string, double> cpuMinutes)
    {
        string modelDir = Path.Combine(output, "model");
        if (File.Exists(Path.Combine(modelDir, Checkpoint.WeightsFile))) return modelDir;
        var defaults = new RunConfig();
        var config = defaults with
        {
            LogEvery = (int)Math.Max(1, steps / 5), CheckpointEvery = 0,
            Schedule = new ScheduleSpec { MaxSteps = steps, WarmupSteps = Math.Min(defaults.Schedule.WarmupSteps, steps / 10) },
            Batch = defaults.Batch with { Workers = 1 },
        };
        // "a+b+c": the first objective at weight 1, the others at 0.5, as the default mix weighs its own.
        if (arm != Mix)
            config = config with
            {
                Objectives = arm.Split('+').Select((name, i) => (name, i)).ToDictionary(p => p.name, p => new ObjectiveSpec { Weight = p.i == 0 ? 1.0 : 0.5 }),
            };
        var cpuBefore = Process.GetCurrentProcess().TotalProcessorTime;
        var result = PretrainJob.Run(config, output,
            log: entry =>
                Console.WriteLine($"  {arm} step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                    $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))}) {entry.SamplesPerSecond:F0} samples/s"));
        cpuMinutes[arm] = (Process.GetCurrentProcess().TotalProcessorTime - cpuBefore).TotalMinutes;
        return result.Training.ModelDirectory;
    }

    static double FineTunedAccuracy(MedformerModel model, ICorpus subset, Tensor testImages, Tensor testLabels, IReadOnlyList<SampleMeta> testMetas, long steps,
        int seed)
    {
        using var tuner = PaysExperiment.FineTune(model, subset, steps, 1e-3, seed);
        return PaysExperiment.Accuracy(tuner, testImages, testLabels, testMetas);
    }
}
