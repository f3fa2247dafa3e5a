namespace Medformer.Tracking;

// MLflow's entities (mlflow.entities), as plain records.

/// <summary>A run's state; the numbers are MLflow's (RunStatus), as its file store keeps them in meta.yaml.</summary>
public enum RunStatus
{
    Running = 1,
    Scheduled = 2,
    Finished = 3,
    Failed = 4,
    Killed = 5,
}

/// <summary>One point of a metric: its value at a step, stamped in milliseconds since the Unix epoch.</summary>
public sealed record Metric(string Key, double Value, long Timestamp, long Step);

/// <summary>An experiment as MLflow describes it.</summary>
public sealed record Experiment(string ExperimentId, string Name, string ArtifactLocation, string LifecycleStage, long? CreationTime, long? LastUpdateTime);

/// <summary>A run's identity and state. <see cref="EndTime"/> is null while it runs (and after a crash).</summary>
public sealed record RunInfo(string RunId, string ExperimentId, string RunName, string UserId, RunStatus Status, long StartTime, long? EndTime,
    string ArtifactUri, string LifecycleStage);

/// <summary>A run with its data: params, tags and each metric's latest point (MLflow's rule: the largest step, then timestamp, then value).</summary>
public sealed record RunRecord(RunInfo Info, IReadOnlyDictionary<string, string> Params, IReadOnlyDictionary<string, string> Tags,
    IReadOnlyDictionary<string, Metric> Metrics);

/// <summary>MLflow's reserved tag names that a run carries.</summary>
public static class MlflowTags
{
    public const string RunName = "mlflow.runName";
    public const string User = "mlflow.user";
    public const string SourceName = "mlflow.source.name";
    public const string SourceType = "mlflow.source.type";

    public static string StatusName(RunStatus status) => status.ToString().ToUpperInvariant();

    public static RunStatus ParseStatus(string name) => Enum.TryParse<RunStatus>(name, ignoreCase: true, out var status) && Enum.IsDefined(status)
        ? status : throw new InvalidDataException($"unknown run status '{name}'");
}
