using System.Diagnostics;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Eval;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// The scoring of <c>bench/run pays</c>: for a label fraction and a seed, trains each method of
/// <see cref="PaysSettings.Methods"/> on that draw of the labels and adds its test accuracy and CPU-minutes to
/// <see cref="Table"/>. It holds what every cell shares: the settings, the stacked test split (the caller's), the
/// Medformer to start from, the fine-tuning recipe and the CPU clock.
/// </summary>
internal sealed class PaysRun
{
    /// <summary>One fraction and seed: its labelled draw and the training images left unlabelled.</summary>
    sealed record Cell(double Fraction, int Seed, Tensor Images, Tensor Labels, TensorCorpus Subset, ICorpus Unlabelled);

    readonly PaysSettings settings;
    readonly PaysData data;
    readonly MedformerConfig? config;
    readonly string? modelDir;
    readonly Tensor testImages, testLabels;
    readonly IReadOnlyList<SampleMeta> testMetas;
    readonly long[] trainLabels;
    readonly int classes;
    readonly Process cpu;
    readonly FineTuneOptions fineTune;

    public PaysRun(PaysSettings settings, PaysData data, MedformerConfig? config, string? modelDir, Tensor testImages, Tensor testLabels,
        IReadOnlyList<SampleMeta> testMetas)
    {
        (this.settings, this.data, this.config, this.modelDir) = (settings, data, config, modelDir);
        (this.testImages, this.testLabels, this.testMetas) = (testImages, testLabels, testMetas);
        var train = data.Train;
        trainLabels = [.. Enumerable.Range(0, (int)train.Count).Select(i => PaysExperiment.Label(train, i))];
        classes = (int)Math.Max(trainLabels.Max(), testLabels.max().item<long>()) + 1;
        Console.WriteLine($"  {data}: {train.Count} training and {data.Test.Count} test images {string.Join("×", data.Spatial)}, {classes} classes");
        Table = new PaysTable(data.ToString(), settings.Fractions);
        cpu = Process.GetCurrentProcess();
        fineTune = PaysExperiment.Options(settings.Steps, settings.LearningRate, 0, data.Spatial);
    }

    public PaysTable Table { get; }
    public List<double> SelfTrainCpuMinutes { get; } = [];
    public List<double> FixMatchCpuMinutes { get; } = [];

    /// <summary>Every method on <paramref name="fraction"/> of the training labels, drawn with <paramref name="seed"/>.</summary>
    public void Score(double fraction, int seed)
    {
        int[] picked = FewLabels.Fraction(trainLabels, fraction, seed);
        var train = data.Train;
        var (images, labels, _) = PaysExperiment.Stack(train, picked);
        using (images)
        using (labels)
        using (var subset = new TensorCorpus($"{data.Name}/labelled", images, labels))
        {
            var unlabelledImages = new SubsetCorpus(train, [.. Enumerable.Range(0, (int)train.Count).Except(picked).Select(i => (long)i)],
                $"{data.Name}/unlabelled");
            var cell = new Cell(fraction, seed, images, labels, subset, unlabelledImages);
            if (settings.Methods.Contains("linear")) LinearOnPixels(cell);
            if (settings.Methods.Contains("cnn")) Cnn(cell);
            foreach (bool pretrained in settings.Inits.Select(i => i == "pretrained")) MedformerRows(cell, pretrained);
        }
    }

    void Record(string row, string method, Cell cell, double accuracy, TimeSpan cpuBefore)
    {
        cpu.Refresh();
        Table.Add(row, method, cell.Fraction, accuracy, (cpu.TotalProcessorTime - cpuBefore).TotalMinutes);
        Console.WriteLine($"  {cell.Fraction:P0} of the labels, seed {cell.Seed}: {row}: {accuracy:P2}");
    }

    TimeSpan Now()
    {
        cpu.Refresh();
        return cpu.TotalProcessorTime;
    }

    void LinearOnPixels(Cell cell)
    {
        var before = Now();
        using var pixelsTrain = cell.Images.flatten(1);
        using var pixelsTest = testImages.flatten(1);
        Record("linear model on raw pixels", "linear", cell, LinearProbe.Fit(pixelsTrain, cell.Labels, pixelsTest, testLabels, classes,
            weightDecay: 1e-2).TestAccuracy, before);
    }

    CnnTrainer NewCnn(Cell cell) => new(new SmallCnn((int)cell.Images.shape[1], classes, data.Spatial.Length), fineTune with { Seed = cell.Seed });

    void Cnn(Cell cell)
    {
        var before = Now();
        Seeding.SeedEverything(2000 + cell.Seed);
        var cnn = NewCnn(cell);
        using var cnnModel = cnn.Model;
        cnn.Fit(cell.Subset);
        Record("small CNN from scratch", "cnn", cell, cnn.Accuracy(testImages, testLabels), before);
        if (settings.FixMatchSpec is not null) CnnFixMatch(cell, cnn);
    }

    /// <summary>FixMatch on the CNN: from the one just trained, or (START "pretrained", which a CNN has not been) a fresh one.</summary>
    void CnnFixMatch(Cell cell, CnnTrainer trained)
    {
        var before = Now();
        Seeding.SeedEverything(3000 + cell.Seed);
        var semi = settings.FixMatchStart == "pretrained" ? NewCnn(cell) : trained;
        using var fresh = settings.FixMatchStart == "pretrained" ? semi.Model : null;
        double share = semi.FixMatch(cell.Subset, cell.Unlabelled, settings.FixMatch, settings.FixMatchSteps, data.Spatial);
        Console.WriteLine($"  cnn FixMatch: {share:P0} of the unlabelled images confident at the last step");
        Record("small CNN from scratch + FixMatch", "cnn", cell, semi.Accuracy(testImages, testLabels), before);
    }

    MedformerModel Encoder(bool pretrained, int seed) => PaysExperiment.Encoder(config!, modelDir, pretrained, seed);

    /// <summary>A Medformer not yet fine-tuned, with the flattened-latent head: the start of a FixMatch run or a student.</summary>
    FineTuner NewTuner(bool pretrained, int seed) => new(Encoder(pretrained, seed), new ClassificationHead(config!, classes, pooling: Pooling.Flatten,
        labelSmoothing: settings.Smoothing, task: PaysExperiment.Task), settings.Strategy);

    /// <summary>Medformer from scratch or pretrained: probed, fine-tuned, then FixMatch and self-training from the fine-tuned one.</summary>
    void MedformerRows(Cell cell, bool pretrained)
    {
        string name = pretrained ? "Medformer pretrained" : "Medformer from scratch";
        string method = pretrained ? "pretrained" : "random";
        var before = Now();
        if (settings.Probe)
        {
            Record($"{name}: linear probe", method, cell, PaysExperiment.Probe(Encoder(pretrained, cell.Seed), cell.Subset, testImages, testLabels,
                testMetas, classes), before);
            before = Now();
        }
        using var tuner = PaysExperiment.FineTune(Encoder(pretrained, cell.Seed), cell.Subset, settings.Steps, settings.LearningRate, cell.Seed,
            settings.Smoothing, settings.Strategy, classes, data.Spatial);
        Record($"{name}, fine-tuned", method, cell, PaysExperiment.Accuracy(tuner, testImages, testLabels, testMetas), before);
        if (settings.FixMatchSpec is not null) MedformerFixMatch(cell, name, method, pretrained, tuner);
        if (settings.SelfTrain is not null && pretrained) SelfTrain(cell, name, method, tuner);
    }

    /// <summary>FixMatch on Medformer: from the fine-tuned model, or (START "pretrained") from the start again.</summary>
    void MedformerFixMatch(Cell cell, string name, string method, bool pretrained, FineTuner tuner)
    {
        var before = Now();
        using var fresh = settings.FixMatchStart == "pretrained" ? NewTuner(pretrained, cell.Seed) : null;
        var semi = fresh ?? tuner;
        var options = PaysExperiment.Options(settings.FixMatchSteps, settings.LearningRate, cell.Seed, data.Spatial) with { Ema = settings.FixMatchEma };
        semi.FixMatch(cell.Subset, cell.Unlabelled, settings.FixMatch, options,
            log: entry =>
                Console.WriteLine($"  fixmatch step {entry.Step}/{entry.MaxSteps} loss {entry.Loss:F4} " +
                    $"({string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))})"));
        FixMatchCpuMinutes.Add((Now() - before).TotalMinutes);
        Console.WriteLine($"  seed {cell.Seed}: FixMatch {FixMatchCpuMinutes[^1]:F1} CPU-minutes");
        Record($"{name}, fine-tuned + FixMatch", method, cell, PaysExperiment.Accuracy(semi, testImages, testLabels, testMetas), before);
    }

    /// <summary>Self-training of the pretrained Medformer: the fine-tuned model is the teacher.</summary>
    void SelfTrain(Cell cell, string name, string method, FineTuner tuner)
    {
        var before = Now();
        // A fourth field "pretrained": the student starts again from the pretrained weights (Noisy Student); else from the teacher's.
        using var student = settings.SelfTrain is { Length: > 3 } && settings.SelfTrain[3] == "pretrained" ? NewTuner(pretrained: true, cell.Seed) : null;
        var result = tuner.SelfTrain(cell.Subset, cell.Unlabelled, settings.SelfTraining,
            PaysExperiment.Options(settings.SelfTrainSteps, settings.LearningRate, cell.Seed, data.Spatial), student: student);
        SelfTrainCpuMinutes.Add((Now() - before).TotalMinutes);
        Console.WriteLine($"  seed {cell.Seed}: {result.Rounds[^1].PseudoLabelled} pseudo-labels, {SelfTrainCpuMinutes[^1]:F1} CPU-minutes");
        Record($"{name}, fine-tuned + self-training", method, cell, PaysExperiment.Accuracy(student ?? tuner, testImages, testLabels, testMetas), before);
    }
}
