namespace Medformer.Tracking;

/// <summary>What a run is started with; every field has MLflow's default.</summary>
public sealed record MlflowRunOptions
{
    /// <summary>The experiment, made if missing (MLFLOW_EXPERIMENT_NAME, else "Default").</summary>
    public string Experiment { get; init; } = Environment.GetEnvironmentVariable("MLFLOW_EXPERIMENT_NAME") is { Length: > 0 } name ? name :
        FileStore.DefaultExperimentName;

    /// <summary>The run's name (a timestamped one when null).</summary>
    public string? RunName { get; init; }

    /// <summary>sqlite:///FILE, a folder or file: URI, an http(s):// URL, or "none"; null: MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.</summary>
    public string? TrackingUri { get; init; }

    public IReadOnlyDictionary<string, string> Tags { get; init; } = new Dictionary<string, string>();

    /// <summary>The <c>mlflow.source.name</c> tag: the program or command (default: this process's executable).</summary>
    public string? SourceName { get; init; }

    /// <summary>Runs on a server: where the spool file goes (default ./mlflow-spool).</summary>
    public string SpoolDirectory { get; init; } = "mlflow-spool";

    public RestOptions Rest { get; init; } = new();

    /// <summary>
    /// Where a failure of tracking's own writes during the run is reported, once (default: standard error). Such a
    /// failure never reaches the caller: tracking never stops training.
    /// </summary>
    public Action<string>? Warn { get; init; } = message => Console.Error.WriteLine(message);

    /// <summary>
    /// Continue this run (a resumed training's, from its trainer.json) rather than start one: it is marked RUNNING
    /// again and logging goes on in it. When the store does not have it, a new run starts and <see cref="Warn"/> says so.
    /// </summary>
    public string? ResumeRunId { get; init; }
}

/// <summary>The entry point, as Python's <c>mlflow.start_run</c>.</summary>
public static class Mlflow
{
    /// <summary>Starts a run where the options' tracking URI says, or returns null for "none".</summary>
    public static MlflowRun? StartRun(MlflowRunOptions? options = null)
    {
        options ??= new MlflowRunOptions();
        var uri = TrackingUri.Resolve(options.TrackingUri);
        if (uri.IsNone) return null;
        if (string.IsNullOrWhiteSpace(options.Experiment)) throw new ArgumentException("the experiment name is empty");
        string runName = options.RunName is { Length: > 0 } given ? given : $"{options.Experiment}-{DateTime.Now:yyyyMMdd-HHmmss}";
        string user = Environment.UserName;
        var tags = new Dictionary<string, string>(options.Tags)
        {
            [MlflowTags.User] = user,
            [MlflowTags.SourceName] = options.SourceName ?? Environment.ProcessPath ?? "medformer",
            [MlflowTags.SourceType] = "LOCAL",
            [MlflowTags.RunName] = runName,
        };
        foreach (var (key, value) in tags)
        {
            TrackingKeys.Validate(key, "tag");
            TrackingKeys.ValidateValue(key, value, "tag");
        }
        long now = FileStore.Now();
        var faults = new TrackingFaults(options.Warn);
        if (uri.OpenStore() is { } store)
        {
            if (Reopen(options, faults, id => store.GetRun(id).Info, id => store.UpdateRun(id, RunStatus.Running, null)) is { } resumed)
                return new MlflowRun(new LocalRunSink(store, resumed), options.Experiment, resumed.RunName, faults, resumed: true);
            var experiment = store.GetOrCreateExperiment(options.Experiment);
            var run = store.CreateRun(experiment.ExperimentId, runName, user, now, tags);
            return new MlflowRun(new LocalRunSink(store, run), options.Experiment, runName, faults);
        }
        var rest = new RestStore(uri.Server!, uri.WithCredentials(options.Rest));
        var reopened = Reopen(options, faults, id => rest.GetRun(id).Info, id => rest.UpdateRun(id, RunStatus.Running, null));
        var start = new RunStart(uri.Server!, options.Experiment, reopened?.RunName ?? runName, user, reopened?.StartTime ?? now, tags);
        var spool = RunSpool.Create(options.SpoolDirectory, start);
        if (reopened is not null) spool.Created(reopened);
        return new MlflowRun(new RestRunSender(rest, spool, start, faults, reopened), options.Experiment, start.RunName, faults, reopened is not null);
    }

    /// <summary>The run <see cref="MlflowRunOptions.ResumeRunId"/> names, marked RUNNING again; null (and a warning) when it cannot be.</summary>
    static RunInfo? Reopen(MlflowRunOptions options, TrackingFaults faults, Func<string, RunInfo> get, Action<string> markRunning)
    {
        if (options.ResumeRunId is not { Length: > 0 } id) return null;
        try
        {
            var info = get(id);
            if (info.LifecycleStage != "active") throw new InvalidDataException($"run {id} is deleted");
            markRunning(id);
            return info with { Status = RunStatus.Running, EndTime = null };
        }
        catch (Exception e) when (e is IOException or InvalidDataException or MlflowRestException or UnauthorizedAccessException or ArgumentException or
            HttpRequestException)
        {
            faults.Report($"continue run {id}", e);
            return null;
        }
    }

    /// <summary>The server a spool file names (its start line).</summary>
    public static string SpoolServer(string spoolFile) => RunSpool.Load(spoolFile).Start.Server.ToString();

    /// <summary>
    /// Sends what a spool file left by a run on a server holds and the server has not taken (<c>medformer runs
    /// replay</c>), to <paramref name="server"/>: the configured one, never one the file names on its own say (a
    /// spool file can come from anyone, and the credentials go where it is sent).
    /// </summary>
    public static TrackingOutcome Replay(string spoolFile, TrackingUri server, RestOptions? options = null) =>
        RunSpool.Replay(spoolFile, server.Server ?? throw new ArgumentException($"--tracking-uri {server.Text}: replay sends to an http(s):// server"),
            server.WithCredentials(options));
}
