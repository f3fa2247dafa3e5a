namespace Medformer.Tracking;

/// <summary>Where an <see cref="MlflowRun"/>'s entries go: the local store at once, or a tracking server in the background.</summary>
interface IRunSink : IDisposable
{
    string Location { get; }

    /// <summary>The run's id; over REST, null until the server has made the run.</summary>
    string? RunId { get; }

    void Log(IReadOnlyList<Metric> metrics, IReadOnlyList<KeyValuePair<string, string>> parameters, IReadOnlyList<KeyValuePair<string, string>> tags);

    void LogArtifact(string localPath, string? artifactPath, bool folder);

    TrackingOutcome End(RunStatus status, long endTime);
}

/// <summary>A local store (SQLite or files): each call writes before it returns (nothing waits on a network).</summary>
sealed class LocalRunSink(ITrackingStore store, RunInfo run) : IRunSink
{
    public string Location => store.Location;

    public string? RunId => run.RunId;

    public void Log(IReadOnlyList<Metric> metrics, IReadOnlyList<KeyValuePair<string, string>> parameters, IReadOnlyList<KeyValuePair<string, string>> tags) =>
        store.LogBatch(run.RunId, metrics, parameters.ToDictionary(), tags.ToDictionary());

    public void LogArtifact(string localPath, string? artifactPath, bool folder)
    {
        if (folder) store.LogArtifacts(run.RunId, localPath, artifactPath);
        else store.LogArtifact(run.RunId, localPath, artifactPath);
    }

    public TrackingOutcome End(RunStatus status, long endTime)
    {
        store.UpdateRun(run.RunId, status, endTime);
        return new TrackingOutcome(store.Location, run.RunId, 0, null, []);
    }

    public void Dispose()
    {
    }
}
