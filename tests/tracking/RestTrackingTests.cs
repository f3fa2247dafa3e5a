using System.Diagnostics;
using System.Text;
using System.Text.Json.Nodes;
using Medformer.Tracking;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>The REST client against an MLflow server on 127.0.0.1: shapes, limits, auth, errors, delays, and a server that goes away.</summary>
public sealed class RestTrackingTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-mlflow-rest-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string SpoolDir => Path.Combine(root, "spool");

    static readonly RestOptions Fast = new()
    {
        RequestTimeout = TimeSpan.FromSeconds(2),
        FirstBackoff = TimeSpan.FromMilliseconds(50),
        MaxBackoff = TimeSpan.FromMilliseconds(400),
        FlushTimeout = TimeSpan.FromSeconds(20),
        SendInterval = TimeSpan.FromMilliseconds(50),
        Token = "secret-token",
        Username = null,
        Password = null,
    };

    MlflowRun Start(string url, RestOptions? rest = null, string name = "r") => Mlflow.StartRun(new MlflowRunOptions
    {
        Experiment = "pretrain",
        RunName = name,
        TrackingUri = url,
        SpoolDirectory = SpoolDir,
        SourceName = "tests",
        Rest = rest ?? Fast,
    })!;

    static List<MlflowRequest> Requests(MlflowServerState state, string endpoint)
    {
        lock (state.Gate) return [.. state.Requests.Where(r => r.Endpoint == endpoint)];
    }

    static MlflowServerState.FakeRun OnlyRun(MlflowServerState state)
    {
        lock (state.Gate) return state.Runs.Values.Single();
    }

    static List<(string Key, long Step)> Points(MlflowServerState.FakeRun run) =>
        [.. run.Metrics.Select(m => ((string)m["key"]!, (long)m["step"]!))];

    string[] SpoolFiles() => Directory.Exists(SpoolDir) ? Directory.GetFiles(SpoolDir) : [];

    [Fact]
    public void ARunReachesTheServerInMlflowsShapesAndLimits()
    {
        using var server = new FakeMlflowServer();
        string model = Directory.CreateDirectory(Path.Combine(root, "model")).FullName;
        File.WriteAllText(Path.Combine(model, "config.json"), "{\"dim\": 64}");
        File.WriteAllBytes(Path.Combine(model, "model.safetensors"), [.. Enumerable.Range(0, 3000).Select(i => (byte)i)]);
        TrackingOutcome outcome;
        using (var run = Start(server.Url))
        {
            run.LogParams(Enumerable.Range(0, 150).Select(i => KeyValuePair.Create($"p{i}", (object?)i)));
            for (int step = 0; step < 1250; step++)
                run.LogMetrics(new Dictionary<string, double> { ["loss"] = step == 7 ? double.NaN : 1.0 / (step + 1), ["lr"] = 1e-3 }, step);
            run.SetTags(Enumerable.Range(0, 120).ToDictionary(i => $"t{i}", i => $"v{i}"));
            run.LogArtifacts(model, "model");
            outcome = run.End();
        }
        Assert.True(outcome.Complete, outcome.Warning);
        Assert.Empty(SpoolFiles());

        var state = server.State;
        var stored = OnlyRun(state);
        Assert.Equal("FINISHED", (string)stored.Info["status"]!);
        Assert.Equal(outcome.RunId, (string)stored.Info["run_id"]!);
        Assert.Equal(150, stored.Params.Count);
        Assert.Equal(2500, stored.Metrics.Count);
        Assert.Equal(2500, Points(stored).Distinct().Count());
        Assert.Equal("NaN", (string)stored.Metrics.Single(m => (string)m["key"]! == "loss" && (long)m["step"]! == 7)["value"]!);
        Assert.Equal("r", stored.Tags["mlflow.runName"]);
        Assert.Equal("tests", stored.Tags["mlflow.source.name"]);
        Assert.Equal("LOCAL", stored.Tags["mlflow.source.type"]);
        Assert.Equal(Environment.UserName, stored.Tags["mlflow.user"]);
        Assert.Equal("v119", stored.Tags["t119"]);

        var create = Requests(state, "runs/create").Single().Json;
        Assert.Equal("1", (string)create["experiment_id"]!);
        Assert.Equal("r", (string)create["run_name"]!);
        Assert.Equal(Environment.UserName, (string)create["user_id"]!);
        Assert.InRange(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - (long)create["start_time"]!, 0, 120_000);
        Assert.Equal("pretrain", (string)Requests(state, "experiments/create").Single().Json["name"]!);
        foreach (var batch in Requests(state, "runs/log-batch").Select(r => r.Json))
        {
            int metrics = batch["metrics"]!.AsArray().Count, parameters = batch["params"]!.AsArray().Count, tags = batch["tags"]!.AsArray().Count;
            Assert.InRange(metrics, 0, 1000);
            Assert.InRange(parameters, 0, 100);
            Assert.InRange(tags, 0, 100);
            Assert.InRange(metrics + parameters + tags, 1, 1000);
            Assert.Equal(outcome.RunId, (string)batch["run_id"]!);
        }
        var update = Requests(state, "runs/update").Single().Json;
        Assert.Equal("FINISHED", (string)update["status"]!);
        Assert.Equal(outcome.RunId, (string)update["run_uuid"]!);
        Assert.True((long)update["end_time"]! >= (long)create["start_time"]!);
        lock (state.Gate)
        {
            Assert.All(state.Requests, r => Assert.Equal("Bearer secret-token", r.Authorization));
            Assert.Equal(File.ReadAllBytes(Path.Combine(model, "model.safetensors")), state.Artifacts[$"1/{outcome.RunId}/artifacts/model/model.safetensors"]);
            Assert.Equal("{\"dim\": 64}", Encoding.UTF8.GetString(state.Artifacts[$"1/{outcome.RunId}/artifacts/model/config.json"]));
        }
    }

    [Fact]
    public void BasicAuthIsSentWhenThereIsNoToken()
    {
        using var server = new FakeMlflowServer();
        using (var run = Start(server.Url, Fast with { Token = null, Username = "ada", Password = "pw" })) run.End();
        lock (server.State.Gate)
            Assert.All(server.State.Requests, r => Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("ada:pw")), r.Authorization));
    }

    [Fact]
    public void AnExperimentAnotherClientCreatesMeanwhileIsUsed()
    {
        int lookups = 0;
        MlflowServerState state = new();
        // The first lookup misses, and another client creates the experiment right after: our create gets RESOURCE_ALREADY_EXISTS.
        using var server = new FakeMlflowServer(state, request =>
        {
            if (request.Endpoint == "experiments/get-by-name" && Interlocked.Increment(ref lookups) == 1)
            {
                lock (state.Gate) state.AddExperiment("pretrain");
                return new MlflowFault(404, "RESOURCE_DOES_NOT_EXIST");
            }
            return null;
        });
        TrackingOutcome outcome;
        using (var run = Start(server.Url))
        {
            run.LogMetric("loss", 1);
            outcome = run.End();
        }
        Assert.True(outcome.Complete, outcome.Warning);
        Assert.Single(state.Experiments);
        Assert.Equal("1", (string)OnlyRun(state).Info["experiment_id"]!);
        Assert.Single(Requests(state, "experiments/create"));
    }

    [Fact]
    public void ServerErrorsRateLimitsAndStallsAreRetriedAndNothingIsLost()
    {
        int creates = 0, batches = 0;
        var faults = new List<int>();
        using var server = new FakeMlflowServer(fault: request =>
        {
            if (request.Endpoint == "runs/create" && Interlocked.Increment(ref creates) == 1) return new MlflowFault(503, "TEMPORARILY_UNAVAILABLE");
            if (request.Endpoint != "runs/log-batch") return null;
            var fault = (Interlocked.Increment(ref batches) % 4) switch
            {
                1 => new MlflowFault(500),
                2 => new MlflowFault(429, "REQUEST_LIMIT_EXCEEDED"),
                3 => new MlflowFault(0, Stall: true),  // no answer: the client times out (2 s) and tries again
                _ => null,
            };
            lock (faults) faults.Add(fault?.Status ?? 200);
            return fault;
        });
        TrackingOutcome outcome;
        using (var run = Start(server.Url))
        {
            for (int step = 0; step < 300; step++)
            {
                run.LogMetric("loss", step, step);
                if (step % 100 == 0) Thread.Sleep(100);
            }
            outcome = run.End();
        }
        Assert.True(outcome.Complete, outcome.Warning);
        var points = Points(OnlyRun(server.State));
        Assert.Equal(300, points.Count);
        Assert.Equal(300, points.Distinct().Count());
        Assert.Equal("FINISHED", (string)OnlyRun(server.State).Info["status"]!);
        Assert.Equal(2, creates);
        lock (faults) Assert.Equal([500, 429, 0, 200], faults.Take(4));  // each kind was met before a batch went through
    }

    [Fact]
    public async Task LoggingNeverWaitsOnTheNetworkAndWhatCannotBeSentIsKept()
    {
        using var server = new FakeMlflowServer(fault: _ => new MlflowFault(0, Stall: true));
        var run = Start(server.Url, Fast with { FlushTimeout = TimeSpan.FromSeconds(1) });
        // The server never answers. A LogMetrics that waited on an answer would sit out a 2 s timeout per request, hours
        // for 5,000 calls; the minute allowed tells that from a pass on any machine, however loaded (no speed is asserted).
        var logging = Task.Run(() =>
        {
            for (int step = 0; step < 5000; step++) run.LogMetrics(new Dictionary<string, double> { ["loss"] = step, ["lr"] = 0.1 }, step);
        });
        Assert.True(await Task.WhenAny(logging, Task.Delay(TimeSpan.FromMinutes(1))) == logging, "LogMetrics waited on a server that never answers");
        await logging;
        var outcome = run.End();
        run.Dispose();
        Assert.Equal(10_001, outcome.Unsent);  // every point and the end
        Assert.NotNull(outcome.SpoolFile);
        Assert.True(File.Exists(outcome.SpoolFile));
        Assert.Contains($"medformer runs replay {outcome.SpoolFile}", outcome.Warning);
        Assert.Contains("no answer within 2 s", outcome.Warning);

        // What was kept is all of it, in the order it was logged: replayed to a server that answers.
        var state = new MlflowServerState();
        using (var healthy = new FakeMlflowServer(state))
        {
            var replayed = Mlflow.Replay(outcome.SpoolFile!, TrackingUri.Parse(healthy.Url), Fast);
            Assert.True(replayed.Complete, replayed.Warning);
        }
        Assert.Equal(Enumerable.Range(0, 5000).SelectMany(s => new[] { ("loss", (long)s), ("lr", (long)s) }), Points(OnlyRun(state)));
        Assert.Equal("FINISHED", (string)OnlyRun(state).Info["status"]!);
    }

    [Fact]
    public void AServerThatGoesAwayMidRunLosesNoMetric()
    {
        var state = new MlflowServerState();
        TrackingOutcome outcome;
        using (var first = new FakeMlflowServer(state))
        {
            var run = Start(first.Url, Fast with { FlushTimeout = TimeSpan.FromSeconds(1) });
            for (int step = 1; step <= 100; step++) run.LogMetric("loss", 1.0 / step, step);
            var clock = Stopwatch.StartNew();
            // a hang guard: the sender waits on nothing here
            while ((OnlyRunOrNull(state)?.Metrics.Count ?? 0) < 100 && clock.Elapsed < TimeSpan.FromSeconds(60)) Thread.Sleep(20);
            Assert.Equal(100, OnlyRun(state).Metrics.Count);
            first.Dispose();  // the server goes away
            for (int step = 101; step <= 250; step++) run.LogMetric("loss", 1.0 / step, step);
            run.SetTag("phase", "after");
            outcome = run.End();
            run.Dispose();
        }
        Assert.Equal(152, outcome.Unsent);  // 150 points, the tag, the end
        Assert.Equal(100, OnlyRun(state).Metrics.Count);
        Assert.Equal("RUNNING", (string)OnlyRun(state).Info["status"]!);

        using var second = new FakeMlflowServer(state);  // back, on another port, with its runs
        var replayed = Mlflow.Replay(outcome.SpoolFile!, TrackingUri.Parse(second.Url), Fast);
        Assert.True(replayed.Complete, replayed.Warning);
        var points = Points(OnlyRun(state));
        Assert.Equal(Enumerable.Range(1, 250).Select(s => ("loss", (long)s)), points.Order());
        Assert.Equal("after", OnlyRun(state).Tags["phase"]);
        Assert.Equal("FINISHED", (string)OnlyRun(state).Info["status"]!);
        Assert.False(File.Exists(outcome.SpoolFile));
        Assert.Single(Requests(state, "runs/create"));
    }

    static MlflowServerState.FakeRun? OnlyRunOrNull(MlflowServerState state)
    {
        lock (state.Gate) return state.Runs.Values.SingleOrDefault();
    }

    [Fact]
    public void ARunStartedWhileTheServerIsDownIsCreatedOnReplay()
    {
        string url;
        using (var gone = new FakeMlflowServer()) url = gone.Url;
        var run = Start(url, Fast with { FlushTimeout = TimeSpan.FromMilliseconds(500) });
        run.LogParam("lr", 0.001);
        for (int step = 1; step <= 20; step++) run.LogMetric("loss", step, step);
        var outcome = run.End(RunStatus.Killed);
        run.Dispose();
        Assert.Null(outcome.RunId);
        Assert.Equal(22, outcome.Unsent);

        using var server = new FakeMlflowServer();
        var replayed = Mlflow.Replay(outcome.SpoolFile!, TrackingUri.Parse(server.Url), Fast);
        Assert.True(replayed.Complete, replayed.Warning);
        var stored = OnlyRun(server.State);
        Assert.Equal(20, stored.Metrics.Count);
        Assert.Equal("0.001", stored.Params["lr"]);
        Assert.Equal("KILLED", (string)stored.Info["status"]!);
        Assert.Equal("r", (string)stored.Info["run_name"]!);
    }

    [Fact]
    public void ASpoolFileLeftByAKilledProcessReplays()
    {
        // What kill -9 leaves: the spool file as it was, no end entry, its last line cut in the middle.
        string copy = Path.Combine(root, "killed.jsonl");
        using (var stalled = new FakeMlflowServer(fault: _ => new MlflowFault(0, Stall: true)))
        {
            var run = Start(stalled.Url, Fast with { FlushTimeout = TimeSpan.FromMilliseconds(200) });
            run.LogParam("lr", 0.1);
            for (int step = 1; step <= 50; step++) run.LogMetric("loss", step, step);
            File.Copy(Directory.GetFiles(SpoolDir).Single(), copy);
            File.AppendAllText(copy, "{\"seq\":99,\"met");
            run.End();
            run.Dispose();
        }
        using var server = new FakeMlflowServer();
        var replayed = Mlflow.Replay(copy, TrackingUri.Parse(server.Url), Fast);
        Assert.True(replayed.Complete, replayed.Warning);
        var stored = OnlyRun(server.State);
        Assert.Equal(Enumerable.Range(1, 50).Select(s => ("loss", (long)s)), Points(stored));
        Assert.Equal("0.1", stored.Params["lr"]);
        Assert.Equal("RUNNING", (string)stored.Info["status"]!);  // nobody said how it ended
        Assert.False(File.Exists(copy));
    }

    [Fact]
    public void ABatchTheServerRefusesIsKeptAndReported()
    {
        using var refused = new ManualResetEventSlim();
        using var server = new FakeMlflowServer(fault: r =>
        {
            if (r.Endpoint != "runs/log-batch" || !r.Json["params"]!.AsArray().Any(p => (string)p!["key"]! == "bad")) return null;
            refused.Set();
            return new MlflowFault(400, "INVALID_PARAMETER_VALUE");
        });
        TrackingOutcome outcome;
        using (var run = Start(server.Url))
        {
            // Each entry in a batch of its own: wait for the server to hold the first point, then to refuse the param.
            run.LogMetric("loss", 1, 1);
            Assert.True(SpinWait.SpinUntil(() => { lock (server.State.Gate) return server.State.Runs.Values.SingleOrDefault() is { } r && Points(r).Count ==
                1; }, TimeSpan.FromSeconds(20)), "the first point never arrived");
            run.LogParam("bad", "x");
            Assert.True(refused.Wait(TimeSpan.FromSeconds(20)), "the bad param was never sent");
            run.LogMetric("loss", 2, 2);
            outcome = run.End();
        }
        Assert.False(outcome.Complete);
        Assert.Equal(1, outcome.Unsent);
        Assert.Contains("400 INVALID_PARAMETER_VALUE", outcome.Warning);
        Assert.Contains("\"op\":\"rejected\"", File.ReadAllText(outcome.SpoolFile!));
        Assert.Equal([("loss", 1L), ("loss", 2L)], Points(OnlyRun(server.State)));
        Assert.Equal("FINISHED", (string)OnlyRun(server.State).Info["status"]!);
    }

    [Fact]
    public void RunsAreReadBackOverRest()
    {
        using var server = new FakeMlflowServer();
        foreach (var (name, lr) in new[] { ("a", 0.1), ("b", 0.01) })
        {
            using var run = Start(server.Url, name: name);
            run.LogParams(new Dictionary<string, object?> { ["lr"] = lr, ["model"] = "tiny" });
            for (int step = 1; step <= 30; step++) run.LogMetric("loss", lr * 100 / step, step);
            Assert.True(run.End().Complete);
        }
        using var rest = new RestStore(new Uri(server.Url), Fast);
        var report = new RunsReport(rest);
        var a = report.Resolve("a");
        Assert.Equal("0.1", a.Params["lr"]);
        Assert.Equal(30, a.Metrics["loss"].Step);
        Assert.Equal(30, rest.GetMetricHistory(a.Info.RunId, "loss").Count);
        string compare = report.FormatCompare([a, report.Resolve("b")]);
        Assert.Contains("* lr", compare);
        Assert.Contains("  model", compare);
        Assert.Contains("1 param differs", compare.Replace("1 param differ", "1 param differs", StringComparison.Ordinal));
        Assert.Equal(2, report.List().Single().Runs.Count);
    }
}
