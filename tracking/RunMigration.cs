namespace Medformer.Tracking;

/// <summary>What <see cref="RunMigration.Copy"/> copied.</summary>
public sealed record MigrationOutcome(int Experiments, int Runs, long MetricPoints, int ArtifactFiles);

/// <summary>
/// <c>medformer runs migrate FROM TO</c>: copies every active run of one local store into another (the file store into
/// SQLite, as MLflow moves on from <c>./mlruns</c>, or back), keeping run ids, names, users, times and statuses, with
/// params, tags, every metric point and the artifacts. Experiments are matched by name and made where missing.
/// </summary>
public static class RunMigration
{
    /// <summary>Metric points per write: a long history goes in a few transactions, not one per point.</summary>
    const int Batch = 1000;

    /// <summary>
    /// Copies the runs; refuses (InvalidOperationException, before anything is written) when <paramref name="to"/>
    /// already holds any of them.
    /// </summary>
    public static MigrationOutcome Copy(ITrackingStore from, ITrackingStore to, Action<string>? progress = null)
    {
        var runs = Runs(from);
        var clashes = runs.Where(r => to.HasRun(r.Run.RunId)).Select(r => r.Run.RunId).ToList();
        if (clashes.Count > 0)
            throw new InvalidOperationException($"{to.Location} already holds {clashes.Count} of the {runs.Count} run(s) (first: {clashes[0]}); nothing " +
                "was copied, and no run is overwritten");
        var experiments = new Dictionary<string, Experiment>(StringComparer.Ordinal);
        long points = 0;
        int files = 0;
        foreach (var experiment in from.ListExperiments().Where(e => e.LifecycleStage == "active"))
            experiments[experiment.ExperimentId] = to.GetOrCreateExperiment(experiment.Name);
        foreach (var (experimentId, info) in runs)
        {
            var record = from.GetRun(info.RunId);
            var copy = to.CreateRun(experiments[experimentId].ExperimentId, info.RunName, info.UserId, info.StartTime, record.Tags, info.RunId);
            to.LogBatch(copy.RunId, [], record.Params, new Dictionary<string, string>());
            foreach (string key in record.Metrics.Keys)
            {
                var history = from.GetMetricHistory(info.RunId, key);
                for (int i = 0; i < history.Count; i += Batch)
                    to.LogBatch(copy.RunId, [.. history.Skip(i).Take(Batch)], new Dictionary<string, string>(), new Dictionary<string, string>());
                points += history.Count;
            }
            string artifacts = from.ArtifactDirectory(info.RunId);
            if (Directory.Exists(artifacts))
            {
                files += Directory.EnumerateFiles(artifacts, "*", SearchOption.AllDirectories).Count();
                to.LogArtifacts(copy.RunId, artifacts);
            }
            to.UpdateRun(copy.RunId, info.Status, info.EndTime);
            progress?.Invoke($"{info.RunId}  {info.RunName}  {MlflowTags.StatusName(info.Status)}");
        }
        return new MigrationOutcome(experiments.Count, runs.Count, points, files);
    }

    static List<(string ExperimentId, RunInfo Run)> Runs(ITrackingStore store) =>
        [.. store.ListExperiments().Where(e => e.LifecycleStage == "active").SelectMany(e => store.ListRuns(e.ExperimentId).Select(r => (e.ExperimentId, r)))];
}
