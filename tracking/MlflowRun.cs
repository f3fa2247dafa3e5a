using System.Globalization;

namespace Medformer.Tracking;

/// <summary>
/// A run being logged, as <c>mlflow.start_run()</c> gives one: params (immutable once logged), metrics with step and
/// timestamp, tags and artifacts. Local runs are written as each call is made; runs on a server are sent in the
/// background (<see cref="RestRunSender"/>). End it with <see cref="End"/>; disposing a run that was not ended marks
/// it FAILED, as leaving a <c>with mlflow.start_run():</c> block by an exception does.
/// <code>
/// using var run = Mlflow.StartRun(new MlflowRunOptions { Experiment = "pretrain", RunName = "tiny" })!;
/// run.LogParams(new Dictionary&lt;string, object?&gt; { ["lr"] = 1e-3, ["batch"] = 64 });
/// run.LogMetrics(new Dictionary&lt;string, double&gt; { ["loss"] = 0.42 }, step: 100);
/// run.LogArtifacts("runs/pretrain/model", "model");
/// run.End();   // FINISHED; End(RunStatus.Killed) after Ctrl-C, End(RunStatus.Failed) after an error
/// </code>
/// </summary>
public sealed class MlflowRun : IDisposable
{
    readonly IRunSink sink;
    readonly TrackingFaults faults;
    readonly Dictionary<string, string> parameters = new(StringComparer.Ordinal);
    TrackingOutcome? outcome;

    internal MlflowRun(IRunSink sink, string experiment, string runName, TrackingFaults faults, bool resumed = false)
    {
        this.sink = sink;
        this.faults = faults;
        Experiment = experiment;
        RunName = runName;
        Resumed = resumed;
    }

    public string Experiment { get; }

    /// <summary>This run continues an earlier one (<see cref="MlflowRunOptions.ResumeRunId"/>) rather than starting anew.</summary>
    public bool Resumed { get; }

    /// <summary>Tracking's own writes that failed so far (each was kept from the caller; the first was reported).</summary>
    public int Failures => faults.Count;

    public string RunName { get; }

    /// <summary>The run's id; for a run on a server, null until the server has made it.</summary>
    public string? RunId => sink.RunId;

    /// <summary>The store's folder or the server's URL.</summary>
    public string Location => sink.Location;

    public void LogParam(string key, object? value) => LogParams(new Dictionary<string, object?> { [key] = value });

    /// <summary>Logs params; a param logged again must have the same value (MLflow refuses a change).</summary>
    public void LogParams(IEnumerable<KeyValuePair<string, object?>> values)
    {
        var fresh = new List<KeyValuePair<string, string>>();
        foreach (var (key, raw) in values)
        {
            string value = Format(raw);
            TrackingKeys.Validate(key, "param");
            TrackingKeys.ValidateValue(key, value, "param");
            if (parameters.TryGetValue(key, out string? old))
            {
                if (old != value)
                    throw new ArgumentException($"param '{key}' was already logged with value '{old}'; MLflow does not allow changing it to '{value}'");
                continue;
            }
            parameters[key] = value;
            fresh.Add(new(key, value));
        }
        if (fresh.Count > 0) faults.Run($"log params to {Location}", () => sink.Log([], fresh, []));
    }

    public void LogMetric(string key, double value, long step = 0, long? timestamp = null) =>
        LogMetrics(new Dictionary<string, double> { [key] = value }, step, timestamp);

    /// <summary>Logs one point per metric at <paramref name="step"/>, stamped now unless <paramref name="timestamp"/> (ms) says.</summary>
    public void LogMetrics(IEnumerable<KeyValuePair<string, double>> values, long step = 0, long? timestamp = null)
    {
        long time = timestamp ?? FileStore.Now();
        var points = values.Select(v => new Metric(v.Key, v.Value, time, step)).ToList();
        foreach (var p in points) TrackingKeys.Validate(p.Key, "metric");
        if (points.Count > 0) faults.Run($"log metrics to {Location}", () => sink.Log(points, [], []));
    }

    public void SetTag(string key, string value) => SetTags(new Dictionary<string, string> { [key] = value });

    public void SetTags(IEnumerable<KeyValuePair<string, string>> tags)
    {
        var list = tags.ToList();
        foreach (var (key, value) in list)
        {
            TrackingKeys.Validate(key, "tag");
            TrackingKeys.ValidateValue(key, value, "tag");
        }
        if (list.Count > 0) faults.Run($"set tags in {Location}", () => sink.Log([], [], list));
    }

    /// <summary>A file, into the run's artifacts under <paramref name="artifactPath"/> (mlflow.log_artifact).</summary>
    public void LogArtifact(string localFile, string? artifactPath = null)
    {
        if (!File.Exists(localFile)) throw new ArgumentException($"artifact {localFile}: no such file");
        if (artifactPath is not null) FileStore.ValidateArtifactPath(artifactPath);
        faults.Run($"log artifact {localFile} to {Location}", () => sink.LogArtifact(localFile, artifactPath, folder: false));
    }

    /// <summary>A folder's contents (a checkpoint, a report), under <paramref name="artifactPath"/> (mlflow.log_artifacts).</summary>
    public void LogArtifacts(string localDirectory, string? artifactPath = null)
    {
        if (!Directory.Exists(localDirectory)) throw new ArgumentException($"artifacts {localDirectory}: no such folder");
        if (artifactPath is not null) FileStore.ValidateArtifactPath(artifactPath);
        faults.Run($"log artifacts {localDirectory} to {Location}", () => sink.LogArtifact(localDirectory, artifactPath, folder: true));
    }

    /// <summary>Sets the status and end time; over REST, waits (up to the flush timeout) for the queue to drain.</summary>
    public TrackingOutcome End(RunStatus status = RunStatus.Finished)
    {
        if (outcome is not null) return outcome;
        if (status is RunStatus.Running or RunStatus.Scheduled)
            throw new ArgumentException($"a run ends FINISHED, FAILED or KILLED, not {MlflowTags.StatusName(status)}");
        TrackingOutcome? ended = null;
        faults.Run($"end the run in {Location}", () => ended = sink.End(status, FileStore.Now()));
        ended ??= new TrackingOutcome(Location, RunId, 0, null, []);
        outcome = faults.Summary is { } failed ? ended with { Errors = [.. ended.Errors, failed] } : ended;
        return outcome;
    }

    public void Dispose()
    {
        if (outcome is null) End(RunStatus.Failed);
        faults.Run($"close the run in {Location}", sink.Dispose);
    }

    /// <summary>A param value as Python's str() writes it: floats shortest round-trip, bools True/False, null empty.</summary>
    public static string Format(object? value) => value switch
    {
        null => "",
        string s => s,
        bool b => b ? "True" : "False",
        double d => PythonFloat.Format(d),
        float f => PythonFloat.Format(double.Parse(f.ToString("R", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture)),
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };
}
