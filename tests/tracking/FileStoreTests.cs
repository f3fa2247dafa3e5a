using System.Globalization;
using Medformer.Tracking;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>The local store, field by field against MLflow's file layout, and read back with MLflow's rules.</summary>
public sealed class FileStoreTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-mlruns-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Store => Path.Combine(root, "mlruns");

    MlflowRun Start(string experiment = "pretrain", string? name = "tiny") =>
        Mlflow.StartRun(new MlflowRunOptions { Experiment = experiment, RunName = name, TrackingUri = Store, SourceName = "tests" })!;

    static Dictionary<string, string> Yaml(string path) =>
        File.ReadAllLines(path).ToDictionary(l => l[..l.IndexOf(": ", StringComparison.Ordinal)], l => l[(l.IndexOf(": ", StringComparison.Ordinal) + 2)..]);

    [Fact]
    public void ANewStoreStartsWithTheDefaultExperimentAsMlflowMakesIt()
    {
        _ = new FileStore(Store);
        Assert.True(Directory.Exists(Path.Combine(Store, ".trash")));
        string meta = Path.Combine(Store, "0", "meta.yaml");
        var lines = File.ReadAllLines(meta);
        // PyYAML's safe_dump order (sorted keys) and quoting: experiment_id is a string.
        Assert.Equal(["artifact_location", "creation_time", "experiment_id", "last_update_time", "lifecycle_stage", "name"],
            lines.Select(l => l.Split(':')[0]));
        var fields = Yaml(meta);
        Assert.Equal($"file://{Store}/0", fields["artifact_location"]);
        Assert.Equal("'0'", fields["experiment_id"]);
        Assert.Equal("Default", fields["name"]);
        Assert.Equal("active", fields["lifecycle_stage"]);
        long created = long.Parse(fields["creation_time"], CultureInfo.InvariantCulture);
        Assert.InRange(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() - created, 0, 60_000);
        Assert.Equal(fields["creation_time"], fields["last_update_time"]);
        var store = MlflowReference.ReadClean(Store);
        var experiment = store["experiments"]!.AsArray().Single()!;
        Assert.Equal("0", (string)experiment["experiment_id"]!);
        Assert.Equal("Default", (string)experiment["name"]!);
    }

    [Fact]
    public void ARunIsWrittenFieldByFieldAndMlflowsRulesReadItBack()
    {
        string artifacts = Directory.CreateDirectory(Path.Combine(root, "model")).FullName;
        File.WriteAllText(Path.Combine(artifacts, "config.json"), "{}");
        Directory.CreateDirectory(Path.Combine(artifacts, "sub"));
        File.WriteAllBytes(Path.Combine(artifacts, "sub", "weights.bin"), [1, 2, 3]);
        string report = Path.Combine(root, "report.txt");
        File.WriteAllText(report, "accuracy 0.9");
        long before = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        string runId;
        using (var run = Start())
        {
            runId = run.RunId!;
            run.LogParams(new Dictionary<string, object?> { ["lr"] = 1e-3, ["batch"] = 64, ["flip"] = true, ["model"] = "tiny", ["betas"] = "[0.9, 0.95]",
                ["small"] = 1e-5 });
            run.LogParam("lr", 0.001);  // the same value again is fine
            run.LogMetrics(new Dictionary<string, double> { ["loss"] = 2.5, ["train/acc"] = 0.125 }, step: 10, timestamp: 1_700_000_000_000);
            run.LogMetric("loss", double.NaN, step: 20, timestamp: 1_700_000_000_001);
            run.LogMetric("loss", double.PositiveInfinity, step: 30, timestamp: 1_700_000_000_002);
            run.LogMetric("loss", double.NegativeInfinity, step: 40, timestamp: 1_700_000_000_003);
            run.LogMetric("loss", 1.5e-7, step: 50, timestamp: 1_700_000_000_004);
            run.SetTag("note", "two\nlines: and 'quotes'");
            run.LogArtifacts(artifacts, "model");
            run.LogArtifact(report);
            Assert.Equal(RunStatus.Finished, run.End().Complete ? RunStatus.Finished : RunStatus.Failed);
        }
        long after = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

        var experiment = new FileStore(Store).GetExperimentByName("pretrain")!;
        string runDir = Path.Combine(Store, experiment.ExperimentId, runId);
        // Only the run inside the experiment folder, besides its meta.yaml.
        Assert.Equal([runDir], Directory.GetDirectories(Path.Combine(Store, experiment.ExperimentId)));
        Assert.Equal(["meta.yaml"], Directory.GetFiles(Path.Combine(Store, experiment.ExperimentId)).Select(Path.GetFileName));
        Assert.Matches("^[0-9a-f]{32}$", runId);

        var meta = Yaml(Path.Combine(runDir, "meta.yaml"));
        Assert.Equal(["artifact_uri", "deleted_time", "end_time", "entry_point_name", "experiment_id", "lifecycle_stage", "run_id", "run_name", "run_uuid",
            "source_name", "source_type", "source_version", "start_time", "status", "tags", "user_id"], meta.Keys);
        Assert.Equal($"file://{runDir}/artifacts", meta["artifact_uri"]);
        Assert.Equal($"'{experiment.ExperimentId}'", meta["experiment_id"]);
        Assert.Equal($"'{runId}'", meta["run_id"]);
        Assert.Equal(meta["run_id"], meta["run_uuid"]);
        Assert.Equal("tiny", meta["run_name"]);
        Assert.Equal("3", meta["status"]);
        Assert.Equal("active", meta["lifecycle_stage"]);
        Assert.Equal("null", meta["deleted_time"]);
        Assert.Equal("[]", meta["tags"]);
        Assert.Equal("4", meta["source_type"]);
        Assert.Equal(Environment.UserName, meta["user_id"]);
        long start = long.Parse(meta["start_time"], CultureInfo.InvariantCulture), end = long.Parse(meta["end_time"], CultureInfo.InvariantCulture);
        Assert.InRange(start, before, end);
        Assert.InRange(end, start, after);

        // Params and tags: the raw value, no trailing newline.
        Assert.Equal("0.001", File.ReadAllText(Path.Combine(runDir, "params", "lr")));
        Assert.Equal("1e-05", File.ReadAllText(Path.Combine(runDir, "params", "small")));
        Assert.Equal("True", File.ReadAllText(Path.Combine(runDir, "params", "flip")));
        Assert.Equal("64", File.ReadAllText(Path.Combine(runDir, "params", "batch")));
        Assert.Equal("two\nlines: and 'quotes'", File.ReadAllText(Path.Combine(runDir, "tags", "note")));
        Assert.Equal("tiny", File.ReadAllText(Path.Combine(runDir, "tags", "mlflow.runName")));
        Assert.Equal(Environment.UserName, File.ReadAllText(Path.Combine(runDir, "tags", "mlflow.user")));
        Assert.Equal("tests", File.ReadAllText(Path.Combine(runDir, "tags", "mlflow.source.name")));
        Assert.Equal("LOCAL", File.ReadAllText(Path.Combine(runDir, "tags", "mlflow.source.type")));

        // Metrics: "<timestamp_ms> <value> <step>\n" per point, values as Python's str(float); '/' makes folders.
        Assert.Equal("1700000000000 2.5 10\n1700000000001 nan 20\n1700000000002 inf 30\n1700000000003 -inf 40\n1700000000004 1.5e-07 50\n",
            File.ReadAllText(Path.Combine(runDir, "metrics", "loss")));
        Assert.Equal("1700000000000 0.125 10\n", File.ReadAllText(Path.Combine(runDir, "metrics", "train", "acc")));
        Assert.Equal([1, 2, 3], File.ReadAllBytes(Path.Combine(runDir, "artifacts", "model", "sub", "weights.bin")));
        Assert.Equal("accuracy 0.9", File.ReadAllText(Path.Combine(runDir, "artifacts", "report.txt")));

        var read = MlflowReference.Run(MlflowReference.ReadClean(Store), runId);
        Assert.Equal(3, (int)read["status"]!);
        Assert.Equal(start, (long)read["start_time"]!);
        Assert.Equal(end, (long)read["end_time"]!);
        Assert.Equal(experiment.ExperimentId, (string)read["experiment_id"]!);
        Assert.Equal("two\nlines: and 'quotes'", (string)read["tags"]!["note"]!);
        Assert.Equal("[0.9, 0.95]", (string)read["params"]!["betas"]!);
        Assert.Equal(["2.5", "nan", "inf", "-inf", "1.5e-07"], read["metrics"]!["loss"]!.AsArray().Select(p => (string)p![1]!));
        Assert.Equal([10L, 20, 30, 40, 50], read["metrics"]!["loss"]!.AsArray().Select(p => (long)p![2]!));
        Assert.Equal(["model/config.json", "model/sub/weights.bin", "report.txt"], read["artifacts"]!.AsArray().Select(a => (string)a!));

        // And our own reader: the latest point is MLflow's (largest step), history in order.
        var store = new FileStore(Store);
        var record = store.GetRun(runId);
        Assert.Equal(50, record.Metrics["loss"].Step);
        Assert.Equal(5, store.GetMetricHistory(runId, "loss").Count);
        Assert.True(double.IsNaN(store.GetMetricHistory(runId, "loss")[1].Value));
        Assert.Equal(RunStatus.Finished, record.Info.Status);
    }

    [Theory]
    [InlineData("")]
    [InlineData("../escape")]
    [InlineData("/absolute")]
    [InlineData("trailing/")]
    [InlineData("double//slash")]
    [InlineData("a/./b")]
    [InlineData("a/../b")]
    [InlineData("..hidden")]
    [InlineData("colon:key")]
    [InlineData("new\nline")]
    [InlineData("trailing newline\n")]
    public void KeysOutsideMlflowsRulesAreRefusedByName(string key)
    {
        using var run = Start();
        var e = Assert.Throws<ArgumentException>(() => run.LogMetric(key, 1));
        Assert.Contains("metric", e.Message);
        Assert.Throws<ArgumentException>(() => run.LogParam(key, 1));
        Assert.Throws<ArgumentException>(() => run.SetTag(key, "v"));
        Assert.Throws<ArgumentException>(() => new FileStore(Store).LogBatch(run.RunId!, [new Metric(key, 1, 0, 0)], new Dictionary<string, string>(),
            new Dictionary<string, string>()));
        run.End();
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(root, "*", SearchOption.AllDirectories), p => p.Contains("escape",
            StringComparison.Ordinal));
    }

    [Fact]
    public void KeysUpTo250CharactersOfLettersDigitsAndPunctuationPass()
    {
        using var run = Start();
        string longest = new string('k', 250);
        run.LogMetric(longest, 1);
        run.LogMetric("ok key-with_all.the/allowed chars", 1);
        run.LogMetric("ünïcödé", 1);  // \w is Unicode in Python's re as in .NET
        Assert.Contains("250", Assert.Throws<ArgumentException>(() => run.LogMetric(longest + "k", 1)).Message);
        run.End();
        MlflowReference.ReadClean(Store);
    }

    [Theory]
    [InlineData("../escape")]
    [InlineData("a/../../escape")]
    [InlineData("/abs/escape")]
    public void ArtifactsStayInsideTheRun(string artifactPath)
    {
        string file = Path.Combine(root, "report.txt");
        File.WriteAllText(file, "x");
        using var run = Start();
        Assert.Contains("must be relative, without '..'", Assert.Throws<ArgumentException>(() => run.LogArtifact(file, artifactPath)).Message);
        Assert.Throws<ArgumentException>(() => run.LogArtifacts(root, artifactPath));
        Assert.Contains("no such file", Assert.Throws<ArgumentException>(() => run.LogArtifact(Path.Combine(root, "missing.txt"))).Message);
        run.End();
        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(Store, "*", SearchOption.AllDirectories), p => p.Contains("escape",
            StringComparison.Ordinal));
    }

    [Fact]
    public void AParamCannotChangeOnceLogged()
    {
        using var run = Start();
        run.LogParam("lr", 0.001);
        var e = Assert.Throws<ArgumentException>(() => run.LogParam("lr", 0.01));
        Assert.Contains("'lr' was already logged with value '0.001'", e.Message);
        // The store checks too, for a writer that is not this run object.
        var store = new FileStore(Store);
        Assert.Throws<ArgumentException>(() => store.LogBatch(run.RunId!, [], new Dictionary<string, string> { ["lr"] = "0.01" }, new Dictionary<string,
            string>()));
        store.LogBatch(run.RunId!, [], new Dictionary<string, string> { ["lr"] = "0.001" }, new Dictionary<string, string>());
        run.End();
        Assert.Equal("0.001", new FileStore(Store).GetRun(run.RunId!).Params["lr"]);
    }

    [Fact]
    public void AKeyThatWouldBeBothAFileAndAFolderIsRefusedByName()
    {
        using var run = Start();
        run.LogMetric("loss", 1);
        Assert.Contains("'loss' is already a metric", Assert.Throws<ArgumentException>(() => run.LogMetric("loss/train", 1)).Message);
        run.LogMetric("acc/train", 1);
        Assert.Contains("already a folder", Assert.Throws<ArgumentException>(() => run.LogMetric("acc", 1)).Message);
        run.End();
    }

    [Fact]
    public void ARunThatNeverEndedStaysRunningAndReadable()
    {
        // What a process killed mid-run leaves: no End, no Dispose.
        var run = Start(name: "crashed");
        for (int step = 1; step <= 5; step++) run.LogMetric("loss", 1.0 / step, step);
        var read = MlflowReference.Run(MlflowReference.ReadClean(Store), run.RunId!);
        Assert.Equal(1, (int)read["status"]!);
        Assert.Null(read["end_time"]);
        Assert.Equal(5, read["metrics"]!["loss"]!.AsArray().Count);
        var info = new FileStore(Store).GetRun(run.RunId!).Info;
        Assert.Equal(RunStatus.Running, info.Status);
        Assert.Null(info.EndTime);
    }

    [Fact]
    public void DisposingARunThatWasNotEndedMarksItFailed()
    {
        string id;
        using (var run = Start()) id = run.RunId!;
        Assert.Equal(RunStatus.Failed, new FileStore(Store).GetRun(id).Info.Status);
    }

    [Fact]
    public void ProcessesStartingRunsOfANewExperimentAtOnceShareIt()
    {
        _ = new FileStore(Store);
        var ids = new string[8];
        Parallel.For(0, ids.Length, i => ids[i] = new FileStore(Store).GetOrCreateExperiment("sweep").ExperimentId);
        Assert.Single(ids.Distinct());
        Assert.Equal(2, new FileStore(Store).ListExperiments().Count);
    }

    [Fact]
    public void MetaYamlQuotesWhatYamlWouldReadAsAnotherType()
    {
        // Run names that YAML 1.1 would read as a bool, a number, null or a mapping stay strings.
        string[] names = ["yes", "off", "null", "~", "123", "1e5", "0x1f", "12:30", "a: b", "#hash", "- dash", "'quoted'", "trailing ", "ünï"];
        var ids = names.Select(n =>
        {
            using var run = Start(name: n);
            run.End();
            return run.RunId!;
        }).ToList();
        var store = MlflowReference.ReadClean(Store);
        for (int i = 0; i < names.Length; i++)
            Assert.Equal(names[i], (string)MlflowReference.Run(store, ids[i])["run_name"]!);
        Assert.Equal(names.Order(StringComparer.Ordinal), new FileStore(Store).ListRuns(new FileStore(Store).GetExperimentByName("pretrain")!.ExperimentId)
            .Select(r => r.RunName).Order(StringComparer.Ordinal));
    }

    [Fact]
    public void FloatsAreWrittenAsPythonsReprAndReadAsPythonsFloat()
    {
        Assert.Equal("0.1", PythonFloat.Format(0.1));
        Assert.Equal("1e-05", PythonFloat.Format(1e-5));
        Assert.Equal("0.0001", PythonFloat.Format(1e-4));
        Assert.Equal("1e+16", PythonFloat.Format(1e16));
        Assert.Equal("1000000000000000.0", PythonFloat.Format(1e15));
        Assert.Equal("100.0", PythonFloat.Format(100));
        Assert.Equal("-0.0", PythonFloat.Format(-0.0));
        Assert.Equal("5e-324", PythonFloat.Format(double.Epsilon));
        Assert.Equal("1.7976931348623157e+308", PythonFloat.Format(double.MaxValue));
        // Random doubles of every magnitude against Debian's Python.
        var random = new Random(7);
        var values = Enumerable.Range(0, 2000).Select(i => i % 2 == 0
            ? BitConverter.Int64BitsToDouble(random.NextInt64())
            : (random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-30, 30))).Where(double.IsFinite).ToList();
        string input = string.Join('\n', values.Select(v => BitConverter.DoubleToInt64Bits(v).ToString(CultureInfo.InvariantCulture)));
        string script = "import struct,sys\nfor l in sys.stdin.read().split():\n    print(repr(struct.unpack('<d', struct.pack('<q', int(l)))[0]))";
        string file = Path.Combine(root, "bits.txt");
        File.WriteAllText(file, input);
        var result = Repo.Run("/bin/sh", ["-c", $"/usr/bin/python3 -c \"$0\" < '{file}'", script]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var expected = result.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(values.Count, expected.Length);
        for (int i = 0; i < values.Count; i++)
        {
            Assert.Equal(expected[i], PythonFloat.Format(values[i]));
            Assert.True(PythonFloat.TryParse(expected[i], out double back) && back.Equals(values[i]), expected[i]);
        }
        foreach (var (text, value) in new[] { ("nan", double.NaN), ("NaN", double.NaN), ("inf", double.PositiveInfinity), ("-Infinity",
            double.NegativeInfinity), ("+1.5", 1.5), ("1_000.5", 1000.5) })
            Assert.True(PythonFloat.TryParse(text, out double parsed) && parsed.Equals(value), text);
        Assert.False(PythonFloat.TryParse("1.2.3", out _));
    }

    [Fact]
    public void AMetricFileWithABadLineIsAnErrorNamingTheFileAndLine()
    {
        using var run = Start();
        run.LogMetric("loss", 1, 1);
        run.End();
        string file = Directory.GetFiles(Store, "loss", SearchOption.AllDirectories).Single();
        File.AppendAllText(file, "1700000000000 oops 2\n");
        var e = Assert.Throws<InvalidDataException>(() => new FileStore(Store).GetMetricHistory(run.RunId!, "loss"));
        Assert.Contains($"{file} (line 2)", e.Message);
        Assert.Contains("'1700000000000 oops 2'", e.Message);
    }
}
