using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Tracking;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// The SQLite store, MLflow's default (sqlite:///mlflow.db): MLflow's schema and rows, the default of every command,
/// concurrent writers, resuming, failures that never stop training, `runs migrate`, and MLflow's own code reading a
/// database and a file store that `medformer pretrain` wrote.
/// </summary>
public sealed class SqliteTrackingTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-sqlite-").FullName;
    readonly List<string> warnings = [];

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Db => Path.Combine(root, "mlflow.db");

    // An empty MLFLOW_TRACKING_URI counts as unset: the default, sqlite:///mlflow.db in the working folder.
    static readonly Dictionary<string, string> Environment = new() { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "",
        ["MLFLOW_EXPERIMENT_NAME"] = "" };

    Repo.Result Cli(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, workingDirectory: root, timeoutSeconds: 300, environment: Environment);
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }

    string Config(string name, long steps, int logEvery = 2)
    {
        string path = Path.Combine(root, name);
        File.WriteAllText(path, $$"""
            model: tiny
            corpora: [{ phantom: 2d }]
            objectives: { inpainting: {} }
            batch: { size: 8, workers: 1 }
            schedule: { max_steps: {{steps}}, warmup_steps: 1 }
            log_every: {{logEvery}}
            checkpoint_every: 1000
            """);
        return path;
    }

    MlflowRun Start(string uri, string name = "r", string? resume = null) => Mlflow.StartRun(new MlflowRunOptions
    {
        Experiment = "api",
        RunName = name,
        TrackingUri = uri,
        ResumeRunId = resume,
        Warn = message => { lock (warnings) warnings.Add(message); },
    })!;

    static RunRecord Named(ITrackingReader store, string name) =>
        store.ListExperiments().SelectMany(e => store.ListRuns(e.ExperimentId)).Select(r => store.GetRun(r.RunId)).Single(r => r.Info.RunName == name);

    [Fact]
    public void ANewDatabaseHasMlflowsSchemaAtOurRevisionAndExperimentZero()
    {
        var store = new SqliteStore(Db);
        Assert.Equal(SqliteStore.SchemaRevision, store.Revision);
        var zero = Assert.Single(store.ListExperiments());
        Assert.Equal(("0", "Default", Path.Combine(root, "mlruns", "0")), (zero.ExperimentId, zero.Name, zero.ArtifactLocation));
        // Opening it again changes nothing, and a second experiment gets the next integer id, as in MLflow.
        var again = new SqliteStore("./" + Path.GetRelativePath(System.Environment.CurrentDirectory, Db));
        Assert.Equal("1", again.GetOrCreateExperiment("pretrain").ExperimentId);
        Assert.Equal("1", store.GetOrCreateExperiment("pretrain").ExperimentId);
        Assert.Equal(2, store.ListExperiments().Count);

        File.WriteAllText(Path.Combine(root, "text.db"), "not a database, just text long enough to be looked at by SQLite");
        var bad = Assert.Throws<InvalidDataException>(() => new SqliteStore(Path.Combine(root, "text.db")));
        Assert.Contains(Path.Combine(root, "text.db"), bad.Message);
    }

    [Fact]
    public void RowsAreWrittenAsMlflowsSqlStoreWritesThem()
    {
        var store = new SqliteStore(Db);
        var experiment = store.GetOrCreateExperiment("e");
        var run = store.CreateRun(experiment.ExperimentId, "r", "ada", 1000, new Dictionary<string, string> { ["t"] = "1" });
        Assert.Matches("^[0-9a-f]{32}$", run.RunId);
        Assert.Equal($"{Path.Combine(root, "mlruns", experiment.ExperimentId)}/{run.RunId}/artifacts", run.ArtifactUri);
        var none = new Dictionary<string, string>();
        store.LogBatch(run.RunId, [new("loss", 3, 10, 1), new("loss", 2, 11, 2), new("loss", 2, 11, 2), new("loss", 9, 5, 0)],
            new Dictionary<string, string> { ["lr"] = "0.001" }, none);
        store.LogBatch(run.RunId, [new("odd", double.NaN, 1, 0), new("big", double.PositiveInfinity, 1, 0)], none, new Dictionary<string,
            string> { ["t"] = "2" });
        Assert.Throws<ArgumentException>(() => store.LogBatch(run.RunId, [], new Dictionary<string, string> { ["lr"] = "0.1" }, none));
        store.LogBatch(run.RunId, [], new Dictionary<string, string> { ["lr"] = "0.001" }, none);  // the same value again is fine
        store.UpdateRun(run.RunId, RunStatus.Killed, 2000);

        var record = store.GetRun(run.RunId);
        Assert.Equal((RunStatus.Killed, 2000L, "ada", "r"), (record.Info.Status, record.Info.EndTime!.Value, record.Info.UserId, record.Info.RunName));
        Assert.Equal("0.001", record.Params["lr"]);
        Assert.Equal(("2", "r"), (record.Tags["t"], record.Tags[MlflowTags.RunName]));
        // The latest point is the largest step, not the last logged; an identical point is kept once.
        Assert.Equal(new Metric("loss", 2, 11, 2), record.Metrics["loss"]);
        Assert.Equal([3.0, 2, 9], store.GetMetricHistory(run.RunId, "loss").Select(m => m.Value));
        Assert.True(double.IsNaN(record.Metrics["odd"].Value));
        Assert.Equal(double.MaxValue, record.Metrics["big"].Value);  // MLflow keeps ±inf as ±max double
        Assert.Throws<ArgumentException>(() => store.UpdateRun("0123456789abcdef0123456789abcdef", RunStatus.Finished, 1));
    }

    [Fact]
    public void PretrainLogsToMlflowDbByDefaultAndRunsReadsIt()
    {
        var result = Cli("pretrain", "--config", Config("run.yaml", 4), "--out", "runs/first", "--threads", "2");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Matches($"mlflow: run [0-9a-f]{{32}} \\(FINISHED\\) in {Db}", result.Stdout);
        Assert.False(File.Exists(Path.Combine(root, "mlruns", "0", "meta.yaml")), "no file store is made beside the database");

        var run = Named(new SqliteStore(Db), "first");
        Assert.Equal(RunStatus.Finished, run.Info.Status);
        Assert.Equal(("tiny", "4", "cpu"), (run.Params["model"], run.Params["schedule.max_steps"], run.Params["device"]));
        Assert.Equal("medformer pretrain", run.Tags[MlflowTags.SourceName]);
        Assert.Equal([2L, 4], new SqliteStore(Db).GetMetricHistory(run.Info.RunId, "loss").Select(m => m.Step));
        Assert.Equal(File.ReadAllBytes(Path.Combine(root, "runs", "first", "model", "model.safetensors")),
            File.ReadAllBytes(Path.Combine(run.Info.ArtifactUri, "model", "model.safetensors")));

        var list = Cli("runs", "list", "--json");
        Assert.Equal(0, list.ExitCode);
        Assert.Equal("FINISHED", (string)JsonNode.Parse(list.Stdout)!["experiments"]!.AsArray().Single()!["runs"]![0]!["status"]!);
        var show = Cli("runs", "show", "first", "--tracking-uri", "sqlite:///" + Db);
        Assert.Contains("status FINISHED", show.Stdout);
    }

    [Fact]
    public async Task TwoPretrainProcessesLoggingToOneDatabaseLoseNothing()
    {
        string config = Config("parallel.yaml", 16, logEvery: 1);
        var processes = new[] { "a", "b" }.Select(name =>
        {
            var start = new ProcessStartInfo(Repo.Cli) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root };
            foreach (string arg in (string[])["pretrain", "--config", config, "--out", "runs/" + name, "--threads", "1"]) start.ArgumentList.Add(arg);
            foreach (var (key, value) in Environment) start.Environment[key] = value;
            return Process.Start(start)!;
        }).ToList();
        foreach (var p in processes)
        {
            var stderr = p.StandardError.ReadToEndAsync();
            output.WriteLine(p.StandardOutput.ReadToEnd());
            Assert.True(p.WaitForExit(300_000), "a pretraining did not finish");
            string errors = await stderr;
            output.WriteLine(errors);
            Assert.True(p.ExitCode == 0, errors);
            Assert.DoesNotContain("mlflow: could not", errors);
        }
        var store = new SqliteStore(Db);
        foreach (string name in new[] { "a", "b" })
        {
            var run = Named(store, name);
            Assert.Equal(RunStatus.Finished, run.Info.Status);
            Assert.Equal(Enumerable.Range(1, 16).Select(s => (long)s), store.GetMetricHistory(run.Info.RunId, "loss").Select(m => m.Step));
        }
    }

    [Fact]
    public void ThreadsWithTheirOwnConnectionsWritingAtOnceLoseNothing()
    {
        var runs = Enumerable.Range(0, 4).Select(i => Start("sqlite:///" + Db, "w" + i)).ToList();
        Parallel.ForEach(runs, new ParallelOptions { MaxDegreeOfParallelism = 4 }, run =>
        {
            for (int step = 0; step < 300; step++) run.LogMetrics(new Dictionary<string, double> { ["loss"] = step, ["lr"] = 1e-3 }, step);
            run.End();
        });
        Assert.Empty(warnings);
        var store = new SqliteStore(Db);
        foreach (var run in runs) Assert.Equal(300, store.GetMetricHistory(run.RunId!, "loss").Count);
    }

    [Fact]
    public void AResumedRunContinuesItsRunInTheDatabase()
    {
        string uri = "sqlite:///" + Db;
        var first = Start(uri);
        string id = first.RunId!;
        first.LogMetric("loss", 1.0, step: 1);
        first.End(RunStatus.Killed);
        first.Dispose();

        var second = Start(uri, resume: id);
        Assert.True(second.Resumed);
        Assert.Equal(id, second.RunId);
        Assert.Equal(RunStatus.Running, new SqliteStore(Db).GetRun(id).Info.Status);
        Assert.Null(new SqliteStore(Db).GetRun(id).Info.EndTime);
        second.SetTag("medformer.resumed_from", "/runs/x/checkpoint-000001");
        second.LogMetric("loss", 0.5, step: 2);
        second.End();
        second.Dispose();

        var record = new SqliteStore(Db).GetRun(id);
        Assert.Equal(RunStatus.Finished, record.Info.Status);
        Assert.Equal("/runs/x/checkpoint-000001", record.Tags["medformer.resumed_from"]);
        Assert.Equal([1L, 2], new SqliteStore(Db).GetMetricHistory(id, "loss").Select(m => m.Step));
        Assert.Single(new SqliteStore(Db).ListRuns(record.Info.ExperimentId));

        var fresh = Start(uri, resume: "0123456789abcdef0123456789abcdef");
        Assert.False(fresh.Resumed);
        Assert.Contains(warnings, w => w.Contains("continue run 0123456789abcdef0123456789abcdef"));
        fresh.End();
        fresh.Dispose();
    }

    [FullDiskFact]
    public void AFullDiskUnderTheDatabaseWarnsOnceAndNeverThrows()
    {
        using var disk = new SmallFilesystem(kib: 1024);  // the schema alone takes about 450 KiB
        var run = Start("sqlite:///" + Path.Combine(disk.Path, "mlflow.db"));
        for (int step = 0; step < 20000; step++)
            run.LogMetrics(new Dictionary<string, double> { ["loss"] = 1.0 / (step + 1), ["lr"] = 1e-3 }, step);
        run.SetTag("phase", "full");
        var outcome = run.End();
        run.Dispose();
        Assert.True(run.Failures > 0, "the filesystem never filled: the test did not test a full disk");
        Assert.Single(warnings);
        Assert.Contains("training goes on", warnings[0]);
        Assert.Contains(Path.Combine(disk.Path, "mlflow.db"), warnings[0]);
        Assert.Contains(outcome.Errors, e => e.Contains("tracking write(s) failed"));
    }

    /// <summary>Runs of every status, with params, tags, NaN, many points and artifacts, made through the run API.</summary>
    void LogRuns(string uri)
    {
        string artifacts = Directory.CreateDirectory(Path.Combine(root, "artifacts-src", "sub")).Parent!.FullName;
        File.WriteAllText(Path.Combine(artifacts, "a.txt"), "a");
        File.WriteAllText(Path.Combine(artifacts, "sub", "b.txt"), "b");
        foreach (var (name, status) in new[] { ("done", RunStatus.Finished), ("stopped", RunStatus.Killed), ("broken", RunStatus.Failed) })
        {
            using var run = Start(uri, name);
            run.LogParams(new Dictionary<string, object?> { ["lr"] = 1e-3, ["name"] = name });
            for (int step = 0; step < 1500; step++) run.LogMetrics(new Dictionary<string, double> { ["loss"] = 1.0 / (step + 1), ["acc"] = step % 7 }, step);
            run.LogMetric("odd", double.NaN, step: 3);
            run.SetTag("kind", name);
            run.LogArtifacts(artifacts, "files");
            run.End(status);
        }
        var running = Start(uri, "running");  // never ended, as a run whose process was killed outright: it stays RUNNING
        running.LogMetric("loss", 1, step: 1);
    }

    [Fact]
    public void MigrateCopiesEveryRunBetweenStoresAndNeverOverwrites()
    {
        string mlruns = Path.Combine(root, "mlruns-old");
        LogRuns(mlruns);
        var copy = Cli("runs", "migrate", mlruns, "sqlite:///" + Db);
        Assert.True(copy.ExitCode == 0, copy.Stderr);
        Assert.Contains("4 run(s) of 2 experiment(s)", copy.Stdout);
        AssertSameRuns(new FileStore(mlruns), new SqliteStore(Db));

        var again = Cli("runs", "migrate", mlruns, "sqlite:///" + Db);
        Assert.Equal(1, again.ExitCode);
        Assert.Contains("already holds 4 of the 4 run(s)", again.Stderr);
        Assert.Single(again.Stderr.Trim().Split('\n'));

        string back = Path.Combine(root, "mlruns-back");
        Assert.Equal(0, Cli("runs", "migrate", "sqlite:///" + Db, "file://" + back).ExitCode);
        AssertSameRuns(new SqliteStore(Db), new FileStore(back));
        MlflowReference.ReadClean(back);

        Assert.Equal(2, Cli("runs", "migrate", "http://127.0.0.1:9/", "sqlite:///" + Db).ExitCode);
        Assert.Equal(2, Cli("runs", "migrate", Path.Combine(root, "nowhere"), "sqlite:///" + Db).ExitCode);
        File.WriteAllText(Path.Combine(root, "junk.db"), "this file is not an SQLite database at all, whatever its name says");
        var junk = Cli("runs", "migrate", "sqlite:///" + Path.Combine(root, "junk.db"), back);
        Assert.Equal(1, junk.ExitCode);
        Assert.Contains(Path.Combine(root, "junk.db"), junk.Stderr);
        var list = Cli("runs", "list", "--tracking-uri", "sqlite:///" + Path.Combine(root, "junk.db"));
        Assert.Equal(1, list.ExitCode);
        Assert.Contains("not a usable SQLite database", list.Stderr);
    }

    static void AssertSameRuns(ITrackingStore from, ITrackingStore to)
    {
        var runs = from.ListExperiments().SelectMany(e => from.ListRuns(e.ExperimentId)).ToList();
        Assert.Equal(4, runs.Count);
        foreach (var info in runs)
        {
            var a = from.GetRun(info.RunId);
            var b = to.GetRun(info.RunId);
            Assert.Equal(a.Info with { ExperimentId = "", ArtifactUri = "" }, b.Info with { ExperimentId = "", ArtifactUri = "" });
            Assert.Equal(a.Params.OrderBy(p => p.Key), b.Params.OrderBy(p => p.Key));
            Assert.Equal(a.Tags.OrderBy(p => p.Key), b.Tags.OrderBy(p => p.Key));
            Assert.Equal(a.Metrics.Keys.Order(), b.Metrics.Keys.Order());
            foreach (string key in a.Metrics.Keys)
                Assert.Equal(from.GetMetricHistory(info.RunId, key), to.GetMetricHistory(info.RunId, key));
            string source = from.ArtifactDirectory(info.RunId), target = to.ArtifactDirectory(info.RunId);
            Assert.Equal(Files(source), Files(target));
        }
    }

    static List<string> Files(string folder) => Directory.Exists(folder)
        ? [.. Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Select(f => Path.GetRelativePath(folder, f)).Order(StringComparer.Ordinal)]
        : [];

    [MlflowSourceFact]
    public void TheEmbeddedSchemaIsWhatMlflowsMigrationsBuild()
    {
        var dump = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "mlflow_sqlite_schema.py"), MlflowSource.Path!]);
        Assert.True(dump.ExitCode == 0, dump.Stderr);
        Assert.Equal(Normalized(File.ReadAllText(Path.Combine(Repo.Root, "tracking", "MlflowSchema.sql"))), Normalized(dump.Stdout));
        Assert.Contains($"VALUES ('{SqliteStore.SchemaRevision}')", dump.Stdout);
    }

    /// <summary>Each statement as its lines, trimmed and sorted: a table's constraints come in set order from MLflow's migrations.</summary>
    static List<string> Normalized(string schema) =>
        [.. schema.Split(";\n", StringSplitOptions.RemoveEmptyEntries)
            .Select(statement => string.Join('\n', statement.Split('\n').Select(line => line.Trim().TrimEnd(',').Trim()).Order(StringComparer.Ordinal)))
            .Order(StringComparer.Ordinal)];

    [MlflowSourceFact]
    public void MlflowReadsTheDatabaseAndTheFileStoreThatPretrainWrote()
    {
        var pretrain = Cli("pretrain", "--config", Config("run.yaml", 6), "--out", "runs/db", "--threads", "2");
        Assert.True(pretrain.ExitCode == 0, pretrain.Stderr);
        string mlruns = Path.Combine(root, "mlruns-files");
        var files = Cli("pretrain", "--config", Config("run.yaml", 6), "--out", "runs/files", "--threads", "2", "--tracking-uri", mlruns);
        Assert.True(files.ExitCode == 0, files.Stderr);
        LogRuns("sqlite:///" + Db);
        LogRuns(mlruns);

        foreach (var (uri, store) in new (string, ITrackingStore)[] { ("sqlite:///" + Db, new SqliteStore(Db)), (new Uri(mlruns).AbsoluteUri,
            new FileStore(mlruns)) })
        {
            var read = MlflowSource.Read(uri);
            output.WriteLine($"{uri}: read by MLflow {read["mlflow"]}, revision {read["revision"]}");
            if (store is SqliteStore) Assert.Equal(SqliteStore.SchemaRevision, (string)read["revision"]!);
            var mlflowRuns = read["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()).Cast<JsonObject>().ToDictionary(r => (string)r["run_id"]!);
            var ours = store.ListExperiments().SelectMany(e => store.ListRuns(e.ExperimentId)).ToList();
            Assert.Equal(5, ours.Count);
            Assert.Equal(ours.Select(r => r.RunId).Order(), mlflowRuns.Keys.Order());
            foreach (var info in ours)
            {
                var record = store.GetRun(info.RunId);
                var theirs = mlflowRuns[info.RunId];
                Assert.Equal((int)record.Info.Status, (int)theirs["status"]!);
                Assert.Equal(record.Info.RunName, (string)theirs["run_name"]!);
                Assert.Equal(record.Info.EndTime, (long?)theirs["end_time"]);
                Assert.Equal(record.Info.StartTime, (long)theirs["start_time"]!);
                Assert.Equal(record.Params.OrderBy(p => p.Key), theirs["params"]!.AsObject().Select(p => KeyValuePair.Create(p.Key, (string)p.Value!)).OrderBy(p
                    => p.Key));
                Assert.Equal(record.Tags.OrderBy(p => p.Key), theirs["tags"]!.AsObject().Select(p => KeyValuePair.Create(p.Key, (string)p.Value!)).OrderBy(p =>
                    p.Key));
                Assert.Equal(record.Metrics.Keys.Order(), theirs["metrics"]!.AsObject().Select(p => p.Key).Order());
                foreach (string key in record.Metrics.Keys)
                {
                    var history = store.GetMetricHistory(info.RunId, key).Select(m => $"{m.Timestamp} {PythonFloat.Format(m.Value)} {m.Step}").ToList();
                    var theirHistory = theirs["metrics"]![key]!.AsArray().Select(p => $"{(long)p![0]!} {(string)p[1]!} {(long)p[2]!}").ToList();
                    Assert.Equal(history.Order(StringComparer.Ordinal), theirHistory.Order(StringComparer.Ordinal));
                    Assert.Equal(PythonFloat.Format(record.Metrics[key].Value), (string)theirs["latest"]![key]!);
                }
                Assert.Equal(Files(store.ArtifactDirectory(info.RunId)).Select(f => f.Replace('\\', '/')),
                    theirs["artifacts"]!.AsArray().Select(a => (string)a!));
            }
            var pretrained = mlflowRuns.Values.Single(r => ((string)r["run_name"]!).StartsWith(store is SqliteStore ? "db" : "files",
                StringComparison.Ordinal));
            Assert.Contains("model/model.safetensors", pretrained["artifacts"]!.AsArray().Select(a => (string)a!));
            Assert.Equal([2L, 4, 6], pretrained["metrics"]!["loss"]!.AsArray().Select(p => (long)p![2]!));
            Assert.Equal(3, (int)pretrained["status"]!);
        }
    }
}
