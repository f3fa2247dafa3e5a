using System.Diagnostics;
using System.IO.Compression;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Pretrain.Training;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run dba</c>: tests the DBA paper's claim (near full-data accuracy from 1% of the data) on Fashion-MNIST
/// (Debian's dataset-fashion-mnist, IDX files). A small Medformer with a classifier head trains through our
/// <see cref="Trainer"/> on 1% of the training labels (600 images, a seeded draw) with and without DBA/EDBA, and
/// on all 60 000 without; each arm is scored on the 10 000 test images. Same steps, optimizer and schedule for
/// every arm. MEDFORMER_DBA_STEPS (default 300), MEDFORMER_DBA_SEEDS (default 2) and MEDFORMER_DBA_ARMS (comma
/// list; default all) keep a run short.
/// </summary>
public static class DbaExperiment
{
    const string Folder = "/usr/share/datasets/fashion-mnist";

    sealed record Arm(string Name, double Fraction, BatchAdaptationOptions? Adaptation, int Batch = 64);

    public static BenchReport Run(BenchOptions options)
    {
        if (!File.Exists(Path.Combine(Folder, "train-images-idx3-ubyte.gz")))
            throw new FileNotFoundException($"{Folder}: Fashion-MNIST is missing; apt-get install dataset-fashion-mnist");
        long steps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_STEPS") ?? "300");
        int seeds = int.Parse(Environment.GetEnvironmentVariable("MEDFORMER_DBA_SEEDS") ?? "2");
        var (trainImages, trainLabels) = Read("train");
        var (testImages, testLabels) = Read("t10k");
        var dba = new BatchAdaptationOptions { Strategy = AdaptationStrategy.GradientNorm, Scope = AdaptationScope.Full, MinBatch = 8, MaxBatch = 64, InitialBatch = 32, Delta = 8 };
        Arm[] arms =
        [
            new("1% baseline (batch 64)", 0.01, null),
            new("1% DBA gradient_norm greedy", 0.01, dba),
            new("1% DBA variance_norm greedy", 0.01, dba with { Strategy = AdaptationStrategy.VarianceNorm }),
            new("1% EDBA gradient_norm 64 cand.", 0.01, dba with { Scope = AdaptationScope.LastLayer, Candidates = 64 }),
            new("1% EDBA variance_norm 64 cand.", 0.01, dba with { Scope = AdaptationScope.LastLayer, Candidates = 64, Strategy = AdaptationStrategy.VarianceNorm }),
            new("100% baseline (batch 64)", 1.0, null),
            // Separates the selection's effect from that of the small batches it settles on.
            new("1% baseline (batch 8)", 0.01, null, Batch: 8),
        ];
        if (Environment.GetEnvironmentVariable("MEDFORMER_DBA_ARMS") is { Length: > 0 } pick)
        {
            var chosen = pick.Split(',').Select(int.Parse).ToHashSet();
            arms = [.. arms.Where((_, i) => chosen.Contains(i))];
        }

        var report = new BenchReport("dba");
        var means = new Dictionary<string, double>();
        foreach (var arm in arms)
        {
            var accuracies = new List<double>();
            var seconds = new List<double>();
            var finalBatch = new List<double>();
            for (int seed = 0; seed < seeds; seed++)
            {
                var clock = Stopwatch.StartNew();
                var (accuracy, batch) = Train(arm, seed, steps, trainImages, trainLabels, testImages, testLabels);
                clock.Stop();
                accuracies.Add(accuracy);
                seconds.Add(clock.Elapsed.TotalSeconds);
                if (batch is { } b) finalBatch.Add(b);
                Console.WriteLine($"  {arm.Name}, seed {seed}: test accuracy {accuracy:P2}, {clock.Elapsed.TotalSeconds:F0} s{(batch is { } s ? $", last batch size {s:F0}" : "")}");
            }
            means[arm.Name] = accuracies.Average();
            report.Add(new BenchRow($"{arm.Name}: accuracy", accuracies.Average() * 100, null, $"% test (mean of {seeds} seeds: {string.Join(", ", accuracies.Select(a => (a * 100).ToString("F2")))})"));
            report.Add(new BenchRow($"{arm.Name}: wall time", seconds.Average(), null, "s per run", HigherIsBetter: false));
            if (finalBatch.Count > 0) report.Add(new BenchRow($"{arm.Name}: last batch size", finalBatch.Average(), null, "samples (mean of the last log window)"));
        }
        trainImages.Dispose();
        testImages.Dispose();
        // Headline: the best 1% adaptive arm against the 1% baseline (above 1: DBA helps).
        var adaptive = means.Where(m => m.Key.StartsWith("1% ", StringComparison.Ordinal) && m.Key.Contains("DBA")).OrderByDescending(m => m.Value).FirstOrDefault();
        if (adaptive.Key is not null && means.TryGetValue(arms[0].Name, out double baseline))
            report.Headline(report.Add(new BenchRow($"best 1% adaptive vs 1% baseline ({adaptive.Key})", adaptive.Value * 100, baseline * 100, "% test accuracy")));
        report.Extra("steps", steps);
        report.Extra("seeds", seeds);
        return report;
    }

    static (double Accuracy, double? LastBatch) Train(Arm arm, int seed, long steps, Tensor trainImages, long[] trainLabels, Tensor testImages, long[] testLabels)
    {
        Seeding.SeedEverything(seed);
        long n = (long)Math.Round(trainImages.shape[0] * arm.Fraction);
        using var order = randperm(trainImages.shape[0], generator: Seeding.Generator("dba-subset", seed))[..(int)n];
        var picked = order.data<long>().ToArray();
        using var images = trainImages.index_select(0, order);
        using var labels = tensor(picked.Select(i => trainLabels[i]).ToArray());
        using var corpus = new TensorCorpus("fashion-mnist", images, labels);
        var config = MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };
        using var task = new Classification(new Medformer(config), 10);
        var trainer = new Trainer(new TrainerOptions
        {
            MaxSteps = steps, LearningRate = 2e-3, MinLearningRate = 1e-5, WarmupSteps = steps / 10, WeightDecay = 0.05,
            Precision = Precision.Fp32, Seed = seed, LogEvery = (int)Math.Max(1, steps / 10), BatchAdaptation = arm.Adaptation,
        }, CPU);
        string output = Directory.CreateTempSubdirectory("medformer-dba-").FullName;
        try
        {
            double? lastBatch = null;
            trainer.Fit(task, start => new DataLoader([new LoaderSource(corpus)], new LoaderOptions(arm.Batch, Seed: seed, Workers: 1)).Batches(start), output,
                log: entry => lastBatch = entry.BatchSize);
            return (task.Accuracy(testImages, testLabels), lastBatch);
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>IDX (gzip): images [N,1,28,28] normalised with the training set's mean and std, labels [N].</summary>
    static (Tensor Images, long[] Labels) Read(string split)
    {
        byte[] pixels = Unzip(Path.Combine(Folder, $"{split}-images-idx3-ubyte.gz"), 0x803, 16);
        byte[] labels = Unzip(Path.Combine(Folder, $"{split}-labels-idx1-ubyte.gz"), 0x801, 8);
        int count = labels.Length;
        if (pixels.Length != count * 28 * 28) throw new InvalidDataException($"{Folder}/{split}: {pixels.Length} pixel bytes for {count} labels");
        using var raw = tensor(pixels, ScalarType.Byte).view(count, 1, 28, 28);
        var images = (raw.to(ScalarType.Float32) / 255 - 0.2860) / 0.3530;
        return (images, [.. labels.Select(b => (long)b)]);
    }

    static byte[] Unzip(string path, int magic, int header)
    {
        using var stream = new GZipStream(File.OpenRead(path), CompressionMode.Decompress);
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        byte[] data = memory.ToArray();
        int found = data.Length >= 4 ? (data[0] << 24) | (data[1] << 16) | (data[2] << 8) | data[3] : -1;
        if (found != magic) throw new InvalidDataException($"{path}: IDX magic 0x{found:x}, expected 0x{magic:x}");
        return data[header..];
    }

    /// <summary>Supervised classification with a pooled classifier head: the experiment's task.</summary>
    sealed class Classification : TrainingTask
    {
        readonly Network network;

        public Classification(Medformer model, int classes) => network = new Network(model, new ClassifierHead(model.Config.Dim, classes));

        public override nn.Module Module => network;

        public override Medformer Model => network.Model;

        public override string? NoPerSampleLoss => null;

        public override IReadOnlyList<TorchSharp.Modules.Linear> LastLayers => [network.Head.Output];

        public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step)
        {
            using var scope = NewDisposeScope();
            var loss = F.cross_entropy(Logits(batch, step.Cast), Labels(batch));
            return (scope.MoveToOuter(loss), new Dictionary<string, Tensor>());
        }

        public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step)
        {
            using var scope = NewDisposeScope();
            var losses = F.cross_entropy(Logits(batch, step.Cast), Labels(batch), reduction: nn.Reduction.None);
            return (scope.MoveToOuter(losses), new Dictionary<string, Tensor>());
        }

        Tensor Logits(Batch batch, Func<Tensor, Tensor> cast) =>
            network.Head.call(Model, Model.forward(cast(batch.Images), [.. batch.Metas.Select(_ => LatentKey.Other)])).to(ScalarType.Float32);

        static Tensor Labels(Batch batch) => tensor(batch.Metas.Select(m => m.Labels[0]).ToArray());

        public double Accuracy(Tensor images, long[] labels)
        {
            network.eval();
            using var noGrad = torch.no_grad();
            long correct = 0;
            for (long start = 0; start < images.shape[0]; start += 500)
            {
                using var scope = NewDisposeScope();
                long end = Math.Min(images.shape[0], start + 500);
                var keys = Enumerable.Repeat(LatentKey.Other, (int)(end - start)).ToArray();
                var predicted = network.Head.call(Model, Model.forward(images.narrow(0, start, end - start), keys)).argmax(1);
                correct += predicted.eq(tensor(labels[(int)start..(int)end])).sum().item<long>();
            }
            network.train();
            return (double)correct / images.shape[0];
        }

        public override void Dispose() => network.Dispose();

        sealed class Network : nn.Module
        {
            private readonly Medformer model;
            private readonly ClassifierHead head;

            public Network(Medformer model, ClassifierHead head) : base("Classification")
            {
                this.model = model;
                this.head = head;
                RegisterComponents();
            }

            public Medformer Model => model;

            public ClassifierHead Head => head;
        }
    }
}
