using System.Globalization;
using System.Text;
using Medformer.Runtime;

namespace Medformer.Tracking;

/// <summary>
/// MLflow's file store (<c>mlruns/</c>), which <c>mlflow ui --backend-store-uri ./mlruns</c> and MLflow's Python
/// client read unchanged:
/// <code>
/// mlruns/.trash/                                        deleted experiments (MLflow's; we leave it empty)
/// mlruns/0/meta.yaml                                    experiment 0, "Default", made with the store as MLflow makes it
/// mlruns/&lt;experiment_id&gt;/meta.yaml                     experiment_id, name, artifact_location, lifecycle_stage, creation/update time
/// mlruns/&lt;experiment_id&gt;/&lt;run_id&gt;/meta.yaml            run_id and run_uuid, status as MLflow's number, times in ms, …
/// mlruns/&lt;experiment_id&gt;/&lt;run_id&gt;/params/&lt;key&gt;         the raw value, no trailing newline
/// mlruns/&lt;experiment_id&gt;/&lt;run_id&gt;/tags/&lt;key&gt;           the same
/// mlruns/&lt;experiment_id&gt;/&lt;run_id&gt;/metrics/&lt;key&gt;        one line per point: "&lt;timestamp_ms&gt; &lt;value&gt; &lt;step&gt;"
/// mlruns/&lt;experiment_id&gt;/&lt;run_id&gt;/artifacts/            files and folders
/// </code>
/// MLflow takes every other folder in an experiment for a run, so nothing else is written there. A key with '/'
/// becomes nested folders, as in MLflow. Crash safety: meta.yaml is replaced atomically; a metric point is appended
/// as one whole line in one write; a run whose process died stays RUNNING with everything logged before readable.
/// </summary>
public sealed class FileStore : ITrackingStore
{
    public const string DefaultExperimentId = "0";
    public const string DefaultExperimentName = "Default";
    const string Trash = ".trash";
    const string Meta = "meta.yaml";
    const string Lock = ".medformer.lock";
    static readonly string[] ReservedExperimentFolders = ["tags", "datasets", "traces"];

    public FileStore(string root)
    {
        Root = Path.GetFullPath(root);
        if (File.Exists(Root)) throw new ArgumentException($"tracking store {Root}: a file, not a folder");
        // As MLflow's FileStore: a new store starts with experiment 0, "Default", and the trash folder.
        if (!Directory.Exists(Root))
        {
            Directory.CreateDirectory(Root);
            WithLock(() =>
            {
                if (!File.Exists(Path.Combine(Root, DefaultExperimentId, Meta))) WriteExperiment(DefaultExperimentId, DefaultExperimentName);
            });
        }
        Directory.CreateDirectory(Path.Combine(Root, Trash));
    }

    public string Root { get; }

    public string Location => Root;

    // ---- experiments ----

    public IReadOnlyList<Experiment> ListExperiments()
    {
        var experiments = new List<Experiment>();
        foreach (string dir in Directory.EnumerateDirectories(Root))
        {
            string name = Path.GetFileName(dir);
            if (name is Trash or "models" || !File.Exists(Path.Combine(dir, Meta))) continue;  // MLflow skips these too
            var experiment = ReadExperiment(dir);
            if (experiment.ExperimentId == name) experiments.Add(experiment);
        }
        return [.. experiments.OrderBy(e => e.CreationTime ?? 0).ThenBy(e => e.ExperimentId, StringComparer.Ordinal)];
    }

    public Experiment? GetExperimentByName(string name) =>
        ListExperiments().FirstOrDefault(e => e.Name == name && e.LifecycleStage == "active");

    /// <summary>The active experiment of that name, created if there is none (safe against other processes doing the same).</summary>
    public Experiment GetOrCreateExperiment(string name)
    {
        if (string.IsNullOrWhiteSpace(name)) throw new ArgumentException("experiment name is empty");
        if (GetExperimentByName(name) is { } found) return found;
        return WithLock(() =>
        {
            if (GetExperimentByName(name) is { } raced) return raced;
            string id;
            // MLflow's ids for new experiments are large random integers too.
            do id = Random.Shared.NextInt64(1L << 40, long.MaxValue).ToString(CultureInfo.InvariantCulture);
            while (Directory.Exists(Path.Combine(Root, id)));
            return WriteExperiment(id, name);
        });
    }

    Experiment WriteExperiment(string id, string name)
    {
        string dir = Directory.CreateDirectory(Path.Combine(Root, id)).FullName;
        long now = Now();
        var experiment = new Experiment(id, name, FileUri(dir), "active", now, now);
        MetaYaml.Write(Path.Combine(dir, Meta), new Dictionary<string, object?>
        {
            ["experiment_id"] = id,
            ["name"] = name,
            ["artifact_location"] = experiment.ArtifactLocation,
            ["lifecycle_stage"] = experiment.LifecycleStage,
            ["creation_time"] = now,
            ["last_update_time"] = now,
        });
        return experiment;
    }

    static Experiment ReadExperiment(string dir)
    {
        string path = Path.Combine(dir, Meta);
        var meta = MetaYaml.Read(path);
        return new Experiment(Required(meta, "experiment_id", path), Required(meta, "name", path), meta.GetValueOrDefault("artifact_location") ?? "",
            meta.GetValueOrDefault("lifecycle_stage") ?? "active", OptionalLong(meta, "creation_time", path), OptionalLong(meta, "last_update_time", path));
    }

    // ---- runs ----

    /// <summary>Creates a RUNNING run with MLflow's tags for its name, user and source.</summary>
    public RunInfo CreateRun(string experimentId, string runName, string userId, long startTime, IReadOnlyDictionary<string, string>? tags = null,
        string? runId = null)
    {
        string experimentDir = ExperimentDir(experimentId);
        if (runId is not null && HasRun(runId)) throw new ArgumentException($"run {runId}: already in {Root}");
        runId ??= Guid.NewGuid().ToString("N");
        string runDir = Path.Combine(experimentDir, runId);
        var info = new RunInfo(runId, experimentId, runName, userId, RunStatus.Running, startTime, null,
            FileUri(Path.Combine(runDir, "artifacts")), "active");
        Directory.CreateDirectory(runDir);
        WriteRunMeta(runDir, info);
        foreach (string folder in new[] { "metrics", "params", "artifacts", "tags" }) Directory.CreateDirectory(Path.Combine(runDir, folder));
        var all = new Dictionary<string, string>(tags ?? new Dictionary<string, string>()) { [MlflowTags.RunName] = runName };
        LogBatch(runId, [], new Dictionary<string, string>(), all);
        return info;
    }

    public bool HasRun(string runId)
    {
        try
        {
            RunDir(runId);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }

    public string ArtifactDirectory(string runId) => Path.Combine(RunDir(runId), "artifacts");

    /// <summary>Sets a run's status and end time (MLflow's update_run_info); the rest of meta.yaml stays.</summary>
    public void UpdateRun(string runId, RunStatus status, long? endTime)
    {
        string runDir = RunDir(runId);
        var info = ReadRunInfo(runDir) with { Status = status, EndTime = endTime };
        WriteRunMeta(runDir, info);
    }

    static void WriteRunMeta(string runDir, RunInfo info) => MetaYaml.Write(Path.Combine(runDir, Meta), new Dictionary<string, object?>
    {
        ["artifact_uri"] = info.ArtifactUri,
        ["deleted_time"] = null,
        ["end_time"] = info.EndTime,
        ["entry_point_name"] = "",
        ["experiment_id"] = info.ExperimentId,
        ["lifecycle_stage"] = info.LifecycleStage,
        ["run_id"] = info.RunId,      // MLflow 3 reads this one,
        ["run_name"] = info.RunName,
        ["run_uuid"] = info.RunId,    // MLflow 2 this one
        ["source_name"] = "",
        ["source_type"] = 4L,         // SourceType.LOCAL
        ["source_version"] = "",
        ["start_time"] = info.StartTime,
        ["status"] = (long)info.Status,
        ["tags"] = Array.Empty<string>(),
        ["user_id"] = info.UserId,
    });

    /// <summary>
    /// Writes params (refusing a changed value, as MLflow does), then metric points (one whole line each, appended),
    /// then tags. Keys are checked first, so a bad key writes nothing.
    /// </summary>
    public void LogBatch(string runId, IReadOnlyList<Metric> metrics, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> tags)
    {
        TrackingKeys.ValidateBatch(metrics, parameters, tags);
        string runDir = RunDir(runId);
        foreach (var (key, value) in parameters)
        {
            string path = KeyPath(runDir, "params", key, "param");
            if (File.Exists(path))
            {
                string old = File.ReadAllText(path, Encoding.UTF8);
                if (old != value)
                    throw new ArgumentException($"param '{key}' was already logged with value '{old}' for run {runId}; MLflow " +
                        $"does not allow changing it to '{value}'");
                continue;
            }
            File.WriteAllText(path, value, Utf8);
        }
        foreach (var group in metrics.GroupBy(m => m.Key))
        {
            var lines = new StringBuilder();
            foreach (var m in group) lines.Append(FormatMetricLine(m)).Append('\n');
            // One write of whole lines to a file opened for append: a crash leaves whole lines only.
            using var stream = new FileStream(KeyPath(runDir, "metrics", group.Key, "metric"), FileMode.Append, FileAccess.Write, FileShare.ReadWrite);
            stream.Write(Utf8.GetBytes(lines.ToString()));
        }
        foreach (var (key, value) in tags)
            File.WriteAllText(KeyPath(runDir, "tags", key, "tag"), value, Utf8);
    }

    public static string FormatMetricLine(Metric m) =>
        $"{m.Timestamp.ToString(CultureInfo.InvariantCulture)} {PythonFloat.Format(m.Value)} {m.Step.ToString(CultureInfo.InvariantCulture)}";

    /// <summary>Copies a file into the run's artifacts, under <paramref name="artifactPath"/> (mlflow.log_artifact).</summary>
    public void LogArtifact(string runId, string localFile, string? artifactPath = null) =>
        ArtifactFiles.LogFile(Path.Combine(RunDir(runId), "artifacts"), localFile, artifactPath);

    /// <summary>Copies a folder's contents into the run's artifacts, under <paramref name="artifactPath"/> (mlflow.log_artifacts).</summary>
    public void LogArtifacts(string runId, string localDirectory, string? artifactPath = null) =>
        ArtifactFiles.LogFolder(Path.Combine(RunDir(runId), "artifacts"), localDirectory, artifactPath);

    /// <summary>A relative path with no '..' part: artifacts stay inside the run.</summary>
    public static void ValidateArtifactPath(string artifactPath)
    {
        if (artifactPath.StartsWith('/') || artifactPath.Split('/', '\\').Any(p => p == ".."))
            throw new ArgumentException($"artifact path '{artifactPath}': must be relative, without '..'");
    }

    public IReadOnlyList<RunInfo> ListRuns(string experimentId)
    {
        string experimentDir = ExperimentDir(experimentId);
        var runs = new List<RunInfo>();
        foreach (string dir in Directory.EnumerateDirectories(experimentDir))
        {
            if (ReservedExperimentFolders.Contains(Path.GetFileName(dir)) || !File.Exists(Path.Combine(dir, Meta))) continue;
            var info = ReadRunInfo(dir);
            if (info.ExperimentId == experimentId && info.LifecycleStage == "active") runs.Add(info);
        }
        return [.. runs.OrderByDescending(r => r.StartTime)];
    }

    public RunRecord GetRun(string runId)
    {
        string runDir = RunDir(runId);
        var info = ReadRunInfo(runDir);
        var metrics = new Dictionary<string, Metric>();
        foreach (string key in Keys(runDir, "metrics"))
            if (ReadMetricFile(runDir, key) is { Count: > 0 } history)
                metrics[key] = history.MaxBy(m => (m.Step, m.Timestamp, m.Value))!;
        return new RunRecord(info, ReadValues(runDir, "params"), ReadValues(runDir, "tags"), metrics);
    }

    public IReadOnlyList<Metric> GetMetricHistory(string runId, string key)
    {
        TrackingKeys.Validate(key, "metric");
        return ReadMetricFile(RunDir(runId), key);
    }

    static List<Metric> ReadMetricFile(string runDir, string key)
    {
        string path = Path.Combine(runDir, "metrics", key);
        if (!File.Exists(path)) return [];
        var points = new List<Metric>();
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0) continue;
            points.Add(ParseMetricLine(key, line) ??
                throw new InvalidDataException($"{path} (line {number}): expected '<timestamp_ms> <value> <step>', found '{line}'"));
        }
        return points;
    }

    /// <summary>MLflow's grammar: 2 or 3 fields split on single spaces; an integer timestamp, a float, an integer step (0 when absent).</summary>
    public static Metric? ParseMetricLine(string key, string line)
    {
        var parts = line.Trim().Split(' ');
        if (parts.Length is not (2 or 3)) return null;
        if (!long.TryParse(parts[0], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long timestamp)) return null;
        if (!PythonFloat.TryParse(parts[1], out double value)) return null;
        long step = 0;
        if (parts.Length == 3 && !long.TryParse(parts[2], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out step)) return null;
        return new Metric(key, value, timestamp, step);
    }

    static Dictionary<string, string> ReadValues(string runDir, string folder) =>
        Keys(runDir, folder).ToDictionary(key => key, key => File.ReadAllText(Path.Combine(runDir, folder, key), Encoding.UTF8), StringComparer.Ordinal);

    /// <summary>Keys stored under a run folder: file paths relative to it, '/'-separated; hidden files are not keys.</summary>
    static IEnumerable<string> Keys(string runDir, string folder)
    {
        string dir = Path.Combine(runDir, folder);
        if (!Directory.Exists(dir)) return [];
        return Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories)
            .Select(f => Path.GetRelativePath(dir, f).Replace(Path.DirectorySeparatorChar, '/'))
            .Where(k => !k.Split('/').Any(p => p.StartsWith('.')))
            .Order(StringComparer.Ordinal);
    }

    static RunInfo ReadRunInfo(string runDir)
    {
        string path = Path.Combine(runDir, Meta);
        var meta = MetaYaml.Read(path);
        string runId = meta.GetValueOrDefault("run_id") ?? Required(meta, "run_uuid", path);
        long status = OptionalLong(meta, "status", path) ?? (long)RunStatus.Running;
        if (!Enum.IsDefined((RunStatus)status)) throw new InvalidDataException($"{path}: status {status} is none of MLflow's (1-5)");
        return new RunInfo(runId, Required(meta, "experiment_id", path), meta.GetValueOrDefault("run_name") ?? "", meta.GetValueOrDefault("user_id") ?? "",
            (RunStatus)status, OptionalLong(meta, "start_time", path) ?? 0, OptionalLong(meta, "end_time", path),
            meta.GetValueOrDefault("artifact_uri") ?? "", meta.GetValueOrDefault("lifecycle_stage") ?? "active");
    }

    // ---- paths ----

    string ExperimentDir(string experimentId)
    {
        string dir = Path.Combine(Root, experimentId);
        if (experimentId.Length == 0 || experimentId.Contains('/') || experimentId.StartsWith('.') || !File.Exists(Path.Combine(dir, Meta)))
            throw new ArgumentException($"experiment {experimentId}: not in {Root}");
        return dir;
    }

    readonly Dictionary<string, string> runDirs = [];

    /// <summary>The run's folder: MLflow finds a run by looking for its id in every experiment.</summary>
    string RunDir(string runId)
    {
        lock (runDirs)
        {
            if (runDirs.TryGetValue(runId, out string? known) && Directory.Exists(known)) return known;
            if (runId.Length == 0 || runId.Any(c => !char.IsAsciiLetterOrDigit(c) && c is not ('-' or '_')))
                throw new ArgumentException($"run id '{runId}': MLflow's run ids are letters, digits, '-' and '_'");
            foreach (string experiment in Directory.EnumerateDirectories(Root))
            {
                string candidate = Path.Combine(experiment, runId);
                if (File.Exists(Path.Combine(candidate, Meta))) return runDirs[runId] = candidate;
            }
            throw new ArgumentException($"run {runId}: not in {Root}");
        }
    }

    /// <summary>A key's file under a run folder; a key that is a folder of another key (or holds one) is refused by name.</summary>
    string KeyPath(string runDir, string folder, string key, string kind)
    {
        // A metric's file is checked once; later points only append (a training run logs the same keys each time).
        string known = $"{runDir}/{folder}/{key}";
        lock (keyPaths)
            if (keyPaths.Contains(known) && File.Exists(known)) return known;
        string path = CheckedKeyPath(runDir, folder, key, kind);
        lock (keyPaths) keyPaths.Add(path);
        return path;
    }

    readonly HashSet<string> keyPaths = [];

    static string CheckedKeyPath(string runDir, string folder, string key, string kind)
    {
        string baseDir = Path.Combine(runDir, folder);
        string path = Path.Combine(baseDir, key);
        var parts = key.Split('/');
        for (int i = 1; i < parts.Length; i++)
            if (File.Exists(Path.Combine(baseDir, string.Join('/', parts[..i]))))
                throw new ArgumentException($"{kind} '{key}': '{string.Join('/', parts[..i])}' is already a {kind}, and MLflow stores '/' in keys as folders");
        if (Directory.Exists(path)) throw new ArgumentException($"{kind} '{key}': already a folder of {kind}s named '{key}/…'");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        return path;
    }

    T WithLock<T>(Func<T> action)
    {
        // Experiments are created under an exclusive lock file at the store's root (MLflow ignores files there), so
        // two processes starting runs of a new experiment at once end up in one experiment.
        string path = Path.Combine(Root, Lock);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        FileStream? held = null;
        while (held is null)
        {
            try
            {
                held = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(20);
            }
        }
        using (held) return action();
    }

    void WithLock(Action action) => WithLock(() =>
    {
        action();
        return 0;
    });

    static string Required(Dictionary<string, string?> meta, string key, string path) =>
        meta.GetValueOrDefault(key) ?? throw new InvalidDataException($"{path}: the field '{key}' is missing");

    static long? OptionalLong(Dictionary<string, string?> meta, string key, string path)
    {
        if (meta.GetValueOrDefault(key) is not { } text) return null;
        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long value)
            ? value : throw new InvalidDataException($"{path}: '{key}' is '{text}', not an integer");
    }

    static readonly UTF8Encoding Utf8 = new(encoderShouldEmitUTF8Identifier: false);

    static string FileUri(string path) => new Uri(Path.GetFullPath(path)).AbsoluteUri;

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
}
