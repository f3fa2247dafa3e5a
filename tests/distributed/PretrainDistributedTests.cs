using System.Diagnostics;
using Medformer.Training;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Distributed;

/// <summary>`medformer pretrain` on two processes: a rank killed mid-run, the survivor's error, and --resume through the launcher.</summary>
public sealed class PretrainDistributedTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dp-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly Dictionary<string, string> Home = new() { ["MEDFORMER_HOME"] = Repo.TestHome };

    [Fact]
    public void AKilledRankStopsTheOtherAndTheRunResumes()
    {
        string config = Path.Combine(root, "run.yaml");
        File.WriteAllText(config, """
            model: tiny
            corpora: [{ phantom: 2d }]
            objectives: { inpainting: {}, simclr: {}, byol: {} }
            batch: { size: 8, workers: 1 }
            schedule: { max_steps: 12, warmup_steps: 2 }
            checkpoint_every: 3
            log_every: 3
            """);
        string outDir = Path.Combine(root, "out");
        string[] args = ["pretrain", "--config", config, "--out", outDir, "--threads", "1"];

        // Two ranks started as torchrun would; rank 1 is killed once the first checkpoint is whole.
        var ranks = Ranks.Start(2, Repo.Cli, args, Home);
        var clock = Stopwatch.StartNew();
        while (TrainingCheckpoint.Latest(outDir) is null && clock.Elapsed < TimeSpan.FromSeconds(120) && !ranks.Any(r => r.Process.HasExited)) Thread.Sleep(50);
        Assert.NotNull(TrainingCheckpoint.Latest(outDir));
        ranks[1].Process.Kill();
        var killed = Stopwatch.StartNew();
        var results = Ranks.Wait(ranks, timeoutSeconds: 90);
        output.WriteLine(results[0].Stdout + results[0].Stderr);
        Assert.True(killed.Elapsed < TimeSpan.FromSeconds(60), $"rank 0 took {killed.Elapsed} to stop");
        Assert.Equal(1, results[0].ExitCode);
        Assert.Contains("medformer pretrain (rank 0): rank 0 of 2: ", results[0].Stderr);
        Assert.Contains("rank 1 died", results[0].Stderr);
        string? last = TrainingCheckpoint.Latest(outDir);
        Assert.NotNull(last);

        // --resume through the launcher finishes from the last checkpoint.
        var resumed = Repo.Run(Repo.Cli, [.. args, "--resume", "--nproc-per-node", "2", "--master-port", Ranks.FreePort().ToString()], timeoutSeconds: 300,
            environment: Home);
        output.WriteLine(resumed.Stdout + resumed.Stderr);
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains($"resuming from {last}", resumed.Stderr);
        Assert.Contains("× 2 processes", resumed.Stdout);
        Assert.Single(resumed.Stdout.Split('\n'), l => l.StartsWith("pretrained 12 steps", StringComparison.Ordinal));   // rank 0 alone reports
        Assert.True(File.Exists(Path.Combine(outDir, "model", "model.safetensors")));

        // And on one process: another world size resumes too, with a notice.
        var single = Repo.Run(Repo.Cli, [.. args, "--resume", "--max-steps", "14"], timeoutSeconds: 300, environment: Home);
        output.WriteLine(single.Stdout + single.Stderr);
        Assert.True(single.ExitCode == 0, single.Stderr);
        Assert.Contains("trained on 2 process(es), this run has 1", single.Stderr);
        Assert.Contains("pretrained 14 steps", single.Stdout);
    }

    [Fact]
    public void TheLauncherStopsTheRanksWhenOneFails()
    {
        // A config error fails every rank at once; the launcher reports the first and exits with its status.
        string config = Path.Combine(root, "bad.yaml");
        File.WriteAllText(config, "optimizer:\n  lrr: 1\n");
        var result = Repo.Run(Repo.Cli, ["pretrain", "--config", config, "--out", Path.Combine(root, "bad"), "--nproc-per-node", "2", "--master-port",
            Ranks.FreePort().ToString()],
            timeoutSeconds: 120, environment: Home);
        output.WriteLine(result.Stdout + result.Stderr);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("unknown key 'lrr'", result.Stderr);
        Assert.Matches("rank [01] exited with status 2", result.Stderr);
    }
}
