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

public sealed class TrainerTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-trainer-").FullName;
    readonly TensorCorpus corpus = Squares.Corpus(96, seed: 3);

    public void Dispose()
    {
        corpus.Dispose();
        Directory.Delete(root, recursive: true);
    }

    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    Pretraining Task(long seed)
    {
        Seeding.SeedEverything(seed);
        var model = new MedformerModel(Config);
        return new Pretraining(model, [(new Rotation(Config.Dim), 1.0), (new Jigsaw(Config.Dim), 0.5)]);
    }

    Func<long, IEnumerable<Batch>> Loader(long seed) =>
        start => new DataLoader([new LoaderSource(corpus)], new LoaderOptions(16, Seed: seed, Workers: 1)).Batches(start);

    static TrainerOptions Options(long steps) => new()
    {
        MaxSteps = steps, LearningRate = 3e-3, WarmupSteps = 5, LogEvery = 5, CheckpointEvery = 10, Seed = 7, Precision = Precision.Fp32,
    };

    static Dictionary<string, Tensor> Weights(string modelDirectory) => Safetensors.Load(Path.Combine(modelDirectory, "model.safetensors"));

    [Fact]
    public void LossFallsAndTheRunLeavesAModelAndCheckpoints()
    {
        using var task = Task(1);
        var result = new Trainer(Options(60), CPU).Fit(task, Loader(1), Path.Combine(root, "run"));
        Assert.Equal(60, result.Steps);
        Assert.Equal(12, result.History.Count);
        Assert.True(result.History[^1].Loss < result.History[0].Loss * 0.9, $"loss {result.History[0].Loss:F3} → {result.History[^1].Loss:F3}");
        Assert.Contains("rotation", result.History[^1].Parts.Keys);
        Assert.Equal(Path.Combine(root, "run", "checkpoint-000060"), result.LastCheckpoint);
        Assert.Equal(2, Directory.GetDirectories(Path.Combine(root, "run"), "checkpoint-*").Length);
        foreach (string file in new[] { "config.json", "model.safetensors", "heads.safetensors", "optimizer.safetensors", "trainer.json" })
            Assert.True(File.Exists(Path.Combine(result.LastCheckpoint, file)), file);
        using var loaded = Checkpoint.Load(result.ModelDirectory);
        Assert.Equal(Config.Dim, loaded.Config.Dim);
    }

    [Fact]
    public void AResumedRunEndsWithTheWeightsOfAnUninterruptedOne()
    {
        using (var task = Task(2))
            new Trainer(Options(30), CPU).Fit(task, Loader(2), Path.Combine(root, "whole"));

        using (var task = Task(2))
        {
            // Stops the run, as a kill would, after the step-20 checkpoint.
            using var stop = new CancellationTokenSource();
            Assert.ThrowsAny<OperationCanceledException>(() => new Trainer(Options(30), CPU).Fit(task, Loader(2), Path.Combine(root, "parts"),
                log: entry => { if (entry.Step == 20) stop.Cancel(); }, cancel: stop.Token));
        }
        Assert.Equal("checkpoint-000020", Path.GetFileName(TrainingCheckpoint.Latest(Path.Combine(root, "parts"))));
        using (var task = Task(99))  // a different initialisation: everything must come from the checkpoint
            new Trainer(Options(30), CPU).Fit(task, Loader(2), Path.Combine(root, "parts"), resume: true);

        var whole = Weights(Path.Combine(root, "whole", "model"));
        var parts = Weights(Path.Combine(root, "parts", "model"));
        Assert.Equal(whole.Keys.Order(), parts.Keys.Order());
        foreach (var (name, value) in whole)
            Assert.True(value.eq(parts[name]).all().item<bool>(), $"{name} differs after resuming");
    }

    [Fact]
    public void AnInterruptBeforeTheFirstCheckpointWritesOneAndTheResumedRunMatchesAnUninterruptedOne()
    {
        using (var task = Task(5))
            new Trainer(Options(14), CPU).Fit(task, Loader(5), Path.Combine(root, "whole"));
        using (var task = Task(5))
        {
            // Ctrl-C during step 7 (the first scheduled checkpoint is at 10): the step finishes, its checkpoint is written.
            using var stop = new CancellationTokenSource();
            var interrupted = Assert.Throws<TrainingInterruptedException>(() => new Trainer(Options(14) with { LogEvery = 1 }, CPU)
                .Fit(task, Loader(5), Path.Combine(root, "parts"), log: entry => { if (entry.Step == 7) stop.Cancel(); }, cancel: stop.Token));
            Assert.Equal(7, interrupted.Step);
            Assert.Equal(Path.Combine(root, "parts", "checkpoint-000007"), interrupted.Checkpoint);
        }
        Assert.Equal("checkpoint-000007", Path.GetFileName(TrainingCheckpoint.Latest(Path.Combine(root, "parts"))));
        using (var task = Task(98))
            new Trainer(Options(14), CPU).Fit(task, Loader(5), Path.Combine(root, "parts"), resume: true);
        var whole = Weights(Path.Combine(root, "whole", "model"));
        foreach (var (name, value) in Weights(Path.Combine(root, "parts", "model")))
            Assert.True(value.eq(whole[name]).all().item<bool>(), $"{name} differs after an interrupt and a resume");
    }

    [Fact]
    public void AnInterruptRightAfterAScheduledCheckpointKeepsItAndAnInterruptBeforeAnyStepLeavesStepZero()
    {
        using (var task = Task(6))
        {
            using var stop = new CancellationTokenSource();
            var interrupted = Assert.Throws<TrainingInterruptedException>(() => new Trainer(Options(30), CPU)
                .Fit(task, Loader(6), Path.Combine(root, "run"), log: entry => { if (entry.Step == 10) stop.Cancel(); }, cancel: stop.Token));
            Assert.Equal(10, interrupted.Step);
        }
        Assert.Equal(["checkpoint-000010"], Directory.GetDirectories(Path.Combine(root, "run"), "checkpoint-*").Select(Path.GetFileName));
        using (var task = Task(6))
        {
            using var stop = new CancellationTokenSource();
            stop.Cancel();
            var interrupted = Assert.Throws<TrainingInterruptedException>(() => new Trainer(Options(30), CPU).Fit(task, Loader(6), Path.Combine(root, "fresh"),
                cancel: stop.Token));
            Assert.Equal(0, interrupted.Step);
        }
        using (var task = Task(6))
            Assert.Equal(30, new Trainer(Options(30), CPU).Fit(task, Loader(6), Path.Combine(root, "fresh"), resume: true).Steps);
    }

    [Fact]
    public void TrainerJsonRecordsThePrecisionThatRanBesideTheRequestedOneAndTheTrackingRun()
    {
        using var task = Task(3);
        var options = Options(5) with { Precision = Precision.Bf16, RunId = "0123abcd" };
        var result = new Trainer(options, CPU).Fit(task, Loader(3), Path.Combine(root, "run"));
        var (ran, _) = MixedPrecision.Resolve(Precision.Bf16, CPU);
        Assert.Equal(ran, result.Precision);
        Assert.Equal(Precision.Bf16, result.RequestedPrecision);
        var state = System.Text.Json.JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(Path.Combine(result.LastCheckpoint, "trainer.json")),
            TrainerState.Json)!;
        Assert.Equal(ran.Name(), state.Precision);
        Assert.Equal("bf16", state.RequestedPrecision);
        Assert.Equal("0123abcd", TrainingCheckpoint.RunIdOf(result.LastCheckpoint));
    }

    [Fact]
    public void TheEtaAveragesSinceTheFirstWindowSoOneSlowWindowBarelyMovesIt()
    {
        var eta = new EtaEstimate();
        // 1,000 steps, logged every 10: the first window (warm-up) takes 30 s, then 1 s a step, and window 50 takes 60 s.
        var elapsed = TimeSpan.FromSeconds(30);
        Assert.Equal(TimeSpan.FromSeconds(990 * 3.0), eta.Remaining(10, 1000, elapsed, 3.0));
        TimeSpan last = default;
        for (long step = 20; step <= 600; step += 10)
        {
            double window = step == 500 ? 6.0 : 1.0;
            elapsed += TimeSpan.FromSeconds(10 * window);
            last = eta.Remaining(step, 1000, elapsed, window);
            if (step == 500) Assert.InRange(last.TotalSeconds, 500 * 1.0, 500 * 1.15);  // the last window alone would say 3,000 s
        }
        Assert.InRange(last.TotalSeconds, 400 * 1.0, 400 * 1.1);
        Assert.Equal(TimeSpan.Zero, eta.Remaining(1000, 1000, elapsed + TimeSpan.FromSeconds(400), 1.0));
    }

    [Fact]
    public void ResumeWithoutACheckpointIsAClearError()
    {
        using var task = Task(1);
        var error = Assert.Throws<ArgumentException>(() => new Trainer(Options(5), CPU).Fit(task, Loader(1), Path.Combine(root, "empty"), resume: true));
        Assert.Contains("no checkpoint in", error.Message);
    }

    [Fact]
    public void ResumingWithAnotherAccumulationIsRefusedAndAnotherLengthNoticed()
    {
        using (var task = Task(4))
            new Trainer(Options(10), CPU).Fit(task, Loader(4), Path.Combine(root, "run"));
        using (var task = Task(4))
        {
            var error = Assert.Throws<ArgumentException>(() => new Trainer(Options(20) with { Accumulation = 2 }, CPU).Fit(task, Loader(4), Path.Combine(root,
                "run"), resume: true));
            Assert.Contains("accumulation 1, not 2", error.Message);
        }
        var notices = new List<string>();
        using (var task = Task(4))
            new Trainer(Options(20), CPU, notices.Add).Fit(task, Loader(4), Path.Combine(root, "run"), resume: true);
        Assert.Contains(notices, n => n.Contains("max_steps is 20 where") && n.Contains("trained towards 10"));
    }

    [Fact]
    public void ResumingWithOtherObjectivesOrAnotherModelNamesTheFileAndTheKeys()
    {
        using (var task = Task(5))
            new Trainer(Options(10), CPU).Fit(task, Loader(5), Path.Combine(root, "run"));
        string checkpoint = TrainingCheckpoint.Latest(Path.Combine(root, "run"))!;
        // The checkpoint keeps the Medformer under its own names and the objectives' weights under theirs.
        using (var stored = new DisposingDictionary(Safetensors.Load(Path.Combine(checkpoint, "model.safetensors"))))
            Assert.Contains("latents.general", stored.Keys);
        using (var stored = new DisposingDictionary(Safetensors.Load(Path.Combine(checkpoint, "heads.safetensors"))))
            Assert.All(stored.Keys, k => Assert.StartsWith("objectives.", k));

        Seeding.SeedEverything(5);
        using (var other = new Pretraining(new MedformerModel(Config), [(new Rotation(Config.Dim), 1.0)]))
        {
            var e = Assert.Throws<InvalidDataException>(() => new Trainer(Options(20), CPU).Fit(other, Loader(5), Path.Combine(root, "run"), resume: true));
            Assert.StartsWith(Path.Combine(checkpoint, "heads.safetensors") +
                ": cannot load into this run's objectives or head: unexpected key(s) 'objectives.jigsaw.",
                e.Message);
        }
        using (var deeper = new Pretraining(new MedformerModel(Config with { Depth = 2 }), [(new Rotation(Config.Dim), 1.0), (new Jigsaw(Config.Dim), 0.5)]))
        {
            var e = Assert.Throws<InvalidDataException>(() => new Trainer(Options(20), CPU).Fit(deeper, Loader(5), Path.Combine(root, "run"), resume: true));
            Assert.StartsWith(Path.Combine(checkpoint, "model.safetensors") + ": cannot load into this run's model: missing key(s) 'blocks.1.", e.Message);
        }
    }

    sealed class DisposingDictionary(Dictionary<string, Tensor> tensors) : IDisposable
    {
        public IEnumerable<string> Keys => tensors.Keys;

        public void Dispose()
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
        }
    }

    [Fact]
    public void BadOptionsAreNamed()
    {
        using var task = Task(1);
        var error = Assert.Throws<ArgumentException>(() => new Trainer(Options(5) with { MinLearningRate = 1 }, CPU).Fit(task, Loader(1), root));
        Assert.Contains("min_lr", error.Message);
    }

    [Fact]
    public void ScheduleWarmsUpThenDecaysToTheMinimum()
    {
        var options = new TrainerOptions { MaxSteps = 110, WarmupSteps = 10, LearningRate = 1e-3, MinLearningRate = 1e-5 };
        Assert.Equal(1e-4, options.LearningRateAt(0), 12);
        Assert.Equal(1e-3, options.LearningRateAt(9), 12);
        Assert.Equal(1e-3, options.LearningRateAt(10), 12);
        Assert.Equal((1e-3 + 1e-5) / 2, options.LearningRateAt(60), 12);
        Assert.Equal(1e-5, options.LearningRateAt(110), 12);
    }
}
