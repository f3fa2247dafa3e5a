using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Medformer.Datasets.Corpora;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Medformer.Tests.Tracking;
using Medformer.Training;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// <c>finetune --resume</c>: a fine-tuning run interrupted at a step and resumed from its checkpoint ends with the
/// weights of the run that was never interrupted; the command refuses a --resume with nothing to resume from.
/// </summary>
public sealed class FinetuneResumeTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-resume-");

    public void Dispose() => scratch.Dispose();

    FinetuneJobOptions Options(string checkpoint, string outDir) => new()
    {
        Checkpoint = checkpoint,
        Task = DataSource.Parse("npz:" + Phantom.Ensure(new PhantomSpec(Dimensionality.Image, 16, 40, 16, 16), Path.Combine(scratch.Root, "data"))),
        Fraction = 0.5,
        // Mixup and an EMA: their draws and averages must go on as they were, too.
        FineTune = new FineTuneOptions { MaxSteps = 6, BatchSize = 8, Precision = Precision.Fp32, OutputDirectory = outDir, LogEvery = 1, Seed = 3, Mixup = 0.4,
            Ema = 0.8 },
    };

    [Fact]
    public void AnInterruptedRunResumedEndsAsTheUninterruptedOne()
    {
        string pretrained = scratch.PretrainedFolder();
        string whole = Path.Combine(scratch.Root, "whole"), cut = Path.Combine(scratch.Root, "cut");
        FinetuneJob.Run(FinetuneJob.Check(Options(pretrained, whole)));

        using var stop = new CancellationTokenSource();
        var progress = new FinetuneProgress { Log = log => { if (log.Step == 3) stop.Cancel(); } };
        var interrupted = Assert.ThrowsAny<TrainingInterruptedException>(() => FinetuneJob.Run(FinetuneJob.Check(Options(pretrained, cut)), progress,
            stop.Token));
        Assert.Equal(3, interrupted.Step);
        Assert.False(Directory.Exists(Path.Combine(cut, "model")));

        var notices = new List<string>();
        var resumed = FinetuneJob.Run(FinetuneJob.Check(Options(pretrained, cut) with { FineTune = Options(pretrained, cut).FineTune with { Resume = true } }),
            new FinetuneProgress { Notice = notices.Add });
        Assert.Contains(notices, n => n.Contains("at step 3"));
        Assert.Equal(6, resumed.FineTuning.Training.Steps);
        foreach (string file in new[] { "model.safetensors", "head.safetensors" })
        {
            var expected = Safetensors.Load(Path.Combine(whole, "model", file));
            var actual = Safetensors.Load(Path.Combine(cut, "model", file));
            try
            {
                Assert.Equal(expected.Keys.Order(), actual.Keys.Order());
                foreach (var (key, value) in expected)
                {
                    using var same = value.equal(actual[key]).all();
                    Assert.True(same.item<bool>(), $"{file}: {key} differs after resuming");
                }
            }
            finally
            {
                foreach (var t in expected.Values.Concat(actual.Values)) t.Dispose();
            }
        }
    }

    [Fact]
    public void ResumeRefusesWhatItCannotContinueBeforeWritingAnything()
    {
        string pretrained = scratch.PretrainedFolder(), outDir = Path.Combine(scratch.Root, "nothing");
        var options = Options(pretrained, outDir) with { FineTune = Options(pretrained, outDir).FineTune with { Resume = true } };
        Assert.Contains($"--resume: no checkpoint in {outDir}", Assert.Throws<ArgumentException>(() => FinetuneJob.Check(options)).Message);
        Assert.Contains("--resume continues the fine-tuning itself", Assert.Throws<ArgumentException>(() => FinetuneJob.Check(options with { SelfTraining =
            new SelfTrainingOptions() })).Message);
        Assert.False(Directory.Exists(outDir));

        var cli = scratch.Run("finetune", "--checkpoint", pretrained, "--task", "phantom:2d", "--resume", "--out", outDir);
        Assert.Equal(2, cli.ExitCode);
        Assert.StartsWith($"medformer finetune: --resume: no checkpoint in {outDir}", cli.Stderr);
        Assert.Single(cli.Stderr.Trim().Split('\n'));
        Assert.False(Directory.Exists(outDir));
    }

    [Fact]
    public void TheCommandContinuesFromTheNewestCheckpoint()
    {
        string pretrained = scratch.PretrainedFolder(), outDir = Path.Combine(scratch.Root, "tuned"), mlruns = Path.Combine(scratch.Root, "mlruns");
        string[] args = ["finetune", "--checkpoint", pretrained, "--task", "phantom:2d,size=16", "--fraction", "0.05", "--batch-size", "4", "--precision",
            "fp32",
            "--checkpoint-every", "1", "--out", outDir, "--tracking-uri", mlruns];
        var first = scratch.Run([.. args, "--max-steps", "2"]);
        Assert.True(first.ExitCode == 0, first.Stderr);
        string runId = RunOf(first.Stdout);
        var more = scratch.Run([.. args, "--max-steps", "4", "--resume"]);
        Assert.True(more.ExitCode == 0, more.Stderr);
        Assert.Contains($"resuming from {Path.Combine(outDir, "checkpoint-000002")} at step 2", more.Stdout + more.Stderr);
        Assert.Contains("fine-tuned 4 steps", more.Stdout);
        Assert.True(File.Exists(Path.Combine(outDir, "model", "head.json")));

        // The resumed job goes on in the same MLflow run: one run, its loss at steps 2 and 4 (once each), the params of the first.
        Assert.Equal(runId, RunOf(more.Stdout));
        var run = (JsonObject)Assert.Single(MlflowReference.ReadClean(mlruns)["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()))!;
        Assert.Equal(runId, (string)run["run_id"]!);
        Assert.Equal(3, (int)run["status"]!);  // FINISHED
        var steps = run["metrics"]!["loss"]!.AsArray().Select(p => (long)p![2]!).Order().ToList();  // [timestamp, value, step]
        Assert.True(steps.SequenceEqual(steps.Distinct()) && steps.Contains(2) && steps.Contains(4), string.Join(",", steps));
        Assert.Equal("2", (string)run["params"]!["max_steps"]!);
        Assert.Equal(Path.Combine(outDir, "checkpoint-000002"), (string)run["tags"]!["medformer.resumed_from"]!);
    }

    static string RunOf(string stdout) => Regex.Match(stdout, "mlflow: run ([0-9a-f]{32})").Groups[1].Value is { Length: 32 } id ? id
        : throw new Xunit.Sdk.XunitException($"no MLflow run in:\n{stdout}");
}
