using System.CommandLine;
using Medformer.Training;
using Medformer.Tracking;

namespace Medformer.Cli;

/// <summary>
/// What the training commands (pretrain, finetune, evaluate) share of MLflow tracking: the options, a run started
/// in the right experiment, trainer log lines as metrics, and the run's end with its status.
/// </summary>
static class Tracked
{
    public static (Option<string?> Uri, Option<string?> Experiment, Option<string?> RunName) Options(string command) => (
        RunsCommand.TrackingUriOption("Where the run is logged for MLflow"),
        new Option<string?>("--experiment") { Description = $"MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else {command})." },
        new Option<string?>("--run-name") { Description = "MLflow run name (default: the --out folder's name)." });

    /// <summary>The command's MLflow run (null with --tracking-uri none); a store it cannot write is an argument error.</summary>
    /// <param name="resumeRunId">The run a resumed training reported to (its trainer.json): continued, not started anew.</param>
    public static MlflowRun? Start(string command, string outDir, string? trackingUri, string? experiment, string? runName,
        IReadOnlyDictionary<string, string>? tags = null, string? resumeRunId = null)
    {
        string output = Path.GetFullPath(outDir);
        var allTags = new Dictionary<string, string> { ["medformer.out"] = output };
        foreach (var (key, value) in tags ?? new Dictionary<string, string>()) allTags[key] = value;
        try
        {
            return Mlflow.StartRun(new MlflowRunOptions
            {
                TrackingUri = trackingUri,
                Experiment = experiment ?? (Environment.GetEnvironmentVariable("MLFLOW_EXPERIMENT_NAME") is { Length: > 0 } name ? name : command),
                RunName = runName ?? Path.GetFileName(output),
                SourceName = "medformer " + command,
                SpoolDirectory = Path.Combine(output, "mlflow-spool"),
                Tags = allTags,
                ResumeRunId = resumeRunId,
                Warn = message => Console.Error.WriteLine($"medformer {command}: {message}"),
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new ArgumentException($"--tracking-uri {TrackingUri.Resolve(trackingUri)}: cannot log there ({e.Message}); " +
                "--tracking-uri none turns tracking off", e);
        }
    }

    /// <summary>A trainer log line as MLflow metrics at its step.</summary>
    public static Dictionary<string, double> Metrics(TrainerLog log)
    {
        var metrics = new Dictionary<string, double>
        {
            ["loss"] = log.Loss,
            ["lr"] = log.LearningRate,
            ["grad_norm"] = log.GradNorm,
            ["samples_per_second"] = log.SamplesPerSecond,
            ["skipped_steps"] = log.SkippedSteps,
        };
        foreach (var (part, value) in log.Parts) metrics[$"loss_{part}"] = value;
        if (log.BatchSize is { } batch) metrics["batch_size"] = batch;
        if (log.SelectedSize is { } selected) metrics["selected_size"] = selected;
        return metrics;
    }

    /// <summary>Ends the run with <paramref name="status"/> (and the error as a tag) and says where it is.</summary>
    public static void End(MlflowRun? tracked, RunStatus status, string command, TextWriter say, string? error = null)
    {
        if (tracked is null) return;
        if (error is not null) tracked.SetTag("medformer.error", error.Length > 8000 ? error[..8000] : error);
        var outcome = tracked.End(status);
        if (outcome.Warning is { } warning) Console.Error.WriteLine($"medformer {command}: mlflow: {warning}");
        else say.WriteLine($"mlflow: run {outcome.RunId} ({MlflowTags.StatusName(status)}) in {outcome.Location}");
    }

    /// <summary>
    /// A failed run (<see cref="ExitCodes.IsFailure"/>): the error's one line, then the run ended as FAILED with the
    /// error as a tag; returns the exit status.
    /// </summary>
    /// <param name="who">What the line starts with; default "medformer COMMAND" (a data-parallel rank names itself).</param>
    public static int Fail(MlflowRun? tracked, string command, Exception e, TextWriter say, string? who = null)
    {
        int status = ExitCodes.Report(who ?? "medformer " + command, e);
        End(tracked, RunStatus.Failed, command, say, e.Message);
        return status;
    }
}
