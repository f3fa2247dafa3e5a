using Medformer.Tracking;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>
/// Tracking never stops training: a full disk under the local store or under the spool file, and a server that drops
/// connections, each give one warning and no exception; and a resumed training continues its MLflow run.
/// </summary>
public sealed class TrackingFailureTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-tracking-failures-").FullName;
    readonly List<string> warnings = [];

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly RestOptions Fast = new()
    {
        RequestTimeout = TimeSpan.FromSeconds(2),
        FirstBackoff = TimeSpan.FromMilliseconds(20),
        MaxBackoff = TimeSpan.FromMilliseconds(200),
        FlushTimeout = TimeSpan.FromSeconds(20),
        SendInterval = TimeSpan.FromMilliseconds(50),
        Token = null,
        Username = null,
        Password = null,
    };

    MlflowRun Start(string uri, string? resume = null, string? spool = null) => Mlflow.StartRun(new MlflowRunOptions
    {
        Experiment = "pretrain",
        RunName = "r",
        TrackingUri = uri,
        SpoolDirectory = spool ?? Path.Combine(root, "spool"),
        Rest = Fast,
        ResumeRunId = resume,
        Warn = message => { lock (warnings) warnings.Add(message); },
    })!;

    [FullDiskFact]
    public void AFullDiskUnderTheLocalStoreWarnsOnceAndNeverThrows()
    {
        using var disk = new SmallFilesystem(kib: 64);
        var run = Start(Path.Combine(disk.Path, "mlruns"));
        for (int step = 0; step < 5000; step++)
            run.LogMetrics(new Dictionary<string, double> { ["loss"] = 1.0 / (step + 1), ["lr"] = 1e-3 }, step);
        run.SetTag("phase", "full");
        var outcome = run.End();
        run.Dispose();
        Assert.True(run.Failures > 0, "the filesystem never filled: the test did not test a full disk");
        Assert.Single(warnings);
        Assert.Contains("No space left on device", warnings[0]);
        Assert.Contains("training goes on", warnings[0]);
        Assert.Contains(outcome.Errors, e => e.Contains("tracking write(s) failed"));
        Assert.NotNull(outcome.Warning);
    }

    [FullDiskFact]
    public void AFullDiskUnderTheSpoolCostsTheJournalNotTheEntries()
    {
        using var disk = new SmallFilesystem(kib: 64);
        using var server = new FakeMlflowServer();
        var run = Start(server.Url, spool: Path.Combine(disk.Path, "spool"));
        disk.Fill();
        for (int step = 1; step <= 300; step++) run.LogMetric("loss", 1.0 / step, step);
        var outcome = run.End();
        run.Dispose();
        Assert.Single(warnings);
        Assert.Contains("spool file", warnings[0]);
        Assert.Equal(0, outcome.Unsent);
        MlflowServerState.FakeRun only;
        lock (server.State.Gate) only = server.State.Runs.Values.Single();
        Assert.Equal(300, only.Metrics.Count);
        Assert.Equal("FINISHED", (string)only.Info["status"]!);
    }

    [Fact]
    public void AServerThatDropsConnectionsLosesNothing()
    {
        int requests = 0;
        // every third, from the first
        using var server = new FakeMlflowServer(fault: _ => Interlocked.Increment(ref requests) % 3 == 1 ? new MlflowFault(0, Drop: true) : null);
        var run = Start(server.Url);
        for (int step = 1; step <= 200; step++) run.LogMetric("loss", 1.0 / step, step);
        var outcome = run.End();
        run.Dispose();
        Assert.True(outcome.Complete, outcome.Warning);
        Assert.Empty(warnings);
        MlflowServerState.FakeRun only;
        lock (server.State.Gate) only = server.State.Runs.Values.Single();
        Assert.Equal(Enumerable.Range(1, 200).Select(s => (long)s), only.Metrics.Select(m => (long)m["step"]!).Order());
        Assert.True(requests > 4, $"only {requests} requests: the drops were not met");
    }

    [Fact]
    public void AResumedRunContinuesItsRunInTheLocalStore()
    {
        string store = Path.Combine(root, "mlruns");
        var first = Start(store);
        string id = first.RunId!;
        for (int step = 1; step <= 5; step++) first.LogMetric("loss", step, step);
        first.LogParam("lr", 0.1);
        first.End(RunStatus.Killed);
        first.Dispose();

        var second = Start(store, resume: id);
        Assert.True(second.Resumed);
        Assert.Equal(id, second.RunId);
        Assert.Equal(RunStatus.Running, new FileStore(store).GetRun(id).Info.Status);
        for (int step = 6; step <= 10; step++) second.LogMetric("loss", step, step);
        second.End();
        second.Dispose();

        var files = new FileStore(store);
        var runs = files.ListRuns(files.GetExperimentByName("pretrain")!.ExperimentId);
        Assert.Equal(id, Assert.Single(runs).RunId);
        Assert.Equal(RunStatus.Finished, runs[0].Status);
        Assert.Equal(Enumerable.Range(1, 10).Select(s => (long)s), files.GetMetricHistory(id, "loss").Select(m => m.Step).Order());
        Assert.Equal("0.1", files.GetRun(id).Params["lr"]);
        Assert.Empty(warnings);
    }

    [Fact]
    public void AResumedRunContinuesItsRunOnAServer()
    {
        using var server = new FakeMlflowServer();
        var first = Start(server.Url);
        for (int step = 1; step <= 5; step++) first.LogMetric("loss", step, step);
        first.End(RunStatus.Killed);
        string id = first.RunId!;
        first.Dispose();

        var second = Start(server.Url, resume: id);
        Assert.True(second.Resumed);
        Assert.Equal(id, second.RunId);
        for (int step = 6; step <= 10; step++) second.LogMetric("loss", step, step);
        Assert.True(second.End().Complete);
        second.Dispose();
        MlflowServerState.FakeRun only;
        lock (server.State.Gate) only = server.State.Runs.Values.Single();
        Assert.Equal("FINISHED", (string)only.Info["status"]!);
        Assert.Equal(10, only.Metrics.Count);
    }

    [Fact]
    public void ARunTheStoreDoesNotHaveStartsAnewWithOneWarning()
    {
        string store = Path.Combine(root, "mlruns");
        var run = Start(store, resume: "0123456789abcdef0123456789abcdef");
        Assert.False(run.Resumed);
        Assert.NotEqual("0123456789abcdef0123456789abcdef", run.RunId);
        run.End();
        run.Dispose();
        Assert.Contains("continue run 0123456789abcdef0123456789abcdef", Assert.Single(warnings));
    }

    [Fact]
    public void AWarningThatCannotBeWrittenIsSwallowedAndCounted()
    {
        var faults = Mlflow.StartRun(new MlflowRunOptions
        {
            Experiment = "pretrain",
            TrackingUri = Path.Combine(root, "mlruns"),
            Warn = _ => throw new IOException("stderr is closed"),
        })!;
        string runDir = Directory.GetDirectories(Path.Combine(root, "mlruns"), faults.RunId!, SearchOption.AllDirectories).Single();
        // The store breaks under the run: its metrics folder becomes a file, so every metric write fails.
        Directory.Delete(Path.Combine(runDir, "metrics"), recursive: true);
        File.WriteAllText(Path.Combine(runDir, "metrics"), "");
        faults.LogMetric("loss", 1, 1);
        faults.LogMetric("loss", 2, 2);
        var outcome = faults.End();
        faults.Dispose();
        Assert.True(faults.Failures >= 2);
        Assert.Contains(outcome.Errors, e => e.Contains("tracking write(s) failed"));
    }
}
