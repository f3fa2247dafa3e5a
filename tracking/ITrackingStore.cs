namespace Medformer.Tracking;

/// <summary>
/// A local store that runs are written to as they train: MLflow's SQLite database (<see cref="SqliteStore"/>) or its
/// file layout (<see cref="FileStore"/>). Every call writes before it returns; <c>runs migrate</c> copies between two.
/// </summary>
public interface ITrackingStore : ITrackingReader
{
    /// <summary>The active experiment of that name, created if there is none (safe against other processes doing the same).</summary>
    Experiment GetOrCreateExperiment(string name);

    /// <summary>
    /// Creates a RUNNING run with MLflow's tag for its name; <paramref name="runId"/> keeps a run's id when it is
    /// copied from another store (a new id otherwise).
    /// </summary>
    RunInfo CreateRun(string experimentId, string runName, string userId, long startTime, IReadOnlyDictionary<string, string>? tags = null,
        string? runId = null);

    /// <summary>Whether the store holds a run with that id (active or deleted).</summary>
    bool HasRun(string runId);

    /// <summary>Sets a run's status and end time (MLflow's update_run_info).</summary>
    void UpdateRun(string runId, RunStatus status, long? endTime);

    /// <summary>Params (a changed value is refused, as MLflow does), metric points and tags, checked before any is written.</summary>
    void LogBatch(string runId, IReadOnlyList<Metric> metrics, IReadOnlyDictionary<string, string> parameters, IReadOnlyDictionary<string, string> tags);

    void LogArtifact(string runId, string localFile, string? artifactPath = null);

    void LogArtifacts(string runId, string localDirectory, string? artifactPath = null);

    /// <summary>The folder holding a run's artifacts (which may not exist yet).</summary>
    string ArtifactDirectory(string runId);
}
