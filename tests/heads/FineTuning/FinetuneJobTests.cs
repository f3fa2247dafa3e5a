using Medformer.Datasets.Corpora;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Medformer.Training;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>
/// <see cref="FinetuneJob"/> without the command line: what it refuses before anything is written, and a whole job
/// (fine-tuning, then FixMatch on the images the label fraction leaves out) reporting through its callbacks.
/// </summary>
public sealed class FinetuneJobTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-job-");

    public void Dispose() => scratch.Dispose();

    FinetuneJobOptions Options(string checkpoint, string outDir) => new()
    {
        Checkpoint = checkpoint,
        Task = DataSource.Parse(Phantom.Ensure(new PhantomSpec(Dimensionality.Image, 16, 40, 16, 16), Path.Combine(scratch.Root, "data"))),
        Fraction = 0.5,
        FineTune = new FineTuneOptions { MaxSteps = 2, BatchSize = 8, Precision = Precision.Fp32, OutputDirectory = outDir, LogEvery = 1 },
    };

    [Fact]
    public void CheckRefusesBeforeAnythingIsWritten()
    {
        string pretrained = scratch.PretrainedFolder(), outDir = Path.Combine(scratch.Root, "out");
        var everything = Options(pretrained, outDir) with { Fraction = 1, SelfTraining = new SelfTrainingOptions() };
        Assert.Contains("--self-train", Assert.Throws<ArgumentException>(() => FinetuneJob.Check(everything)).Message);
        var both = Options(pretrained, outDir) with { SelfTraining = new SelfTrainingOptions(), FixMatch = new FixMatchOptions() };
        Assert.Contains("pick one", Assert.Throws<ArgumentException>(() => FinetuneJob.Check(both)).Message);
        var fraction = Options(pretrained, outDir) with { Fraction = 0 };
        Assert.Contains("--fraction 0", Assert.Throws<ArgumentException>(() => FinetuneJob.Check(fraction)).Message);
        Assert.Contains("no such checkpoint folder", Assert.ThrowsAny<IOException>(() => FinetuneJob.Check(Options(Path.Combine(scratch.Root, "missing"),
            outDir))).Message);
        Assert.False(Directory.Exists(outDir));
        Assert.Equal("classification", FinetuneJob.Check(Options(pretrained, outDir)).Head);
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void RunsFineTuningThenFixMatchThroughItsCallbacks()
    {
        string outDir = Path.Combine(scratch.Root, "tuned");
        var options = Options(scratch.PretrainedFolder(), outDir) with { FixMatch = new FixMatchOptions { UnlabelledRatio = 1 }, FixMatchSteps = 2 };
        FinetuneStart? started = null;
        SemiSupervisedStart? semi = null;
        var logs = new List<TrainerLog>();
        var result = FinetuneJob.Run(options, new FinetuneProgress { Started = s => started = s, Log = logs.Add, SemiSupervised = s => semi = s });

        Assert.NotNull(started);
        Assert.Equal("classification", started.HeadKind);
        Assert.Equal(result.TrainSamples, started.TrainSamples);
        Assert.Equal(2, started.MaxSteps);
        // Fine-tuning's steps 1, 2, then FixMatch's 1, 2.
        Assert.Equal([1L, 2, 1, 2], logs.Select(l => l.Step));
        Assert.NotNull(semi);
        Assert.Equal("fixmatch", semi.Method);
        Assert.Equal(40 - result.TrainSamples, semi.Unlabelled);
        Assert.Equal(semi.Unlabelled, result.Unlabelled);
        Assert.InRange(result.Test["accuracy"], 0, 1);
        Assert.Equal(Path.Combine(outDir, "fixmatch", "model"), result.FineTuning.ModelDirectory);
        Assert.True(File.Exists(Path.Combine(outDir, "model", "head.json")));
        Assert.True(File.Exists(Path.Combine(outDir, "fixmatch", "model", "head.json")));
    }
}
