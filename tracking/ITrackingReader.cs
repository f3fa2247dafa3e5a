namespace Medformer.Tracking;

/// <summary>What <c>medformer runs</c> reads from a store, local or over REST.</summary>
public interface ITrackingReader
{
    /// <summary>Where the store is (a folder or a URL), for messages.</summary>
    string Location { get; }

    IReadOnlyList<Experiment> ListExperiments();

    IReadOnlyList<RunInfo> ListRuns(string experimentId);

    RunRecord GetRun(string runId);

    /// <summary>Every logged point of one metric, in the order logged.</summary>
    IReadOnlyList<Metric> GetMetricHistory(string runId, string key);
}
