using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Pretrain;
using Medformer.Pretrain.Training;
using Medformer.Runtime;
using Medformer.Tracking;
using TorchSharp;

namespace Medformer.Cli;

/// <summary><c>medformer pretrain</c>: the main job. With no arguments, the tiny model on the embedded phantom corpus.</summary>
static class PretrainCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "A run config (YAML or JSON), or a model preset (tiny, small, base, large) for the default run with that model." };
        var device = new Option<string?>("--device") { Description = "cpu or cuda[:N] (default: the config's, else cpu)." };
        var precision = new Option<string?>("--precision") { Description = "fp32, bf16 or fp16 (default: the config's, bf16)." };
        var output = new Option<string>("--out") { Description = "Output folder: checkpoints and the final model.", DefaultValueFactory = _ => Path.Combine("runs", "pretrain") };
        var seed = new Option<long?>("--seed") { Description = "Seed of every random draw (default: the config's, 0)." };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Optimizer steps (default: the config's)." };
        var resume = new Option<bool>("--resume") { Description = "Continue from the newest checkpoint in --out." };
        var strict = new Option<bool>("--strict") { Description = "Stop at the first bad sample instead of skipping it." };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for libtorch (default: all cores)." };
        var deterministic = new Option<bool>("--deterministic") { Description = "Bitwise-reproducible CPU run (fixes threads, deterministic kernels)." };
        var trackingUri = RunsCommand.TrackingUriOption("Where the run is logged for MLflow");
        var experiment = new Option<string?>("--experiment") { Description = "MLflow experiment (default: $MLFLOW_EXPERIMENT_NAME, else pretrain)." };
        var runName = new Option<string?>("--run-name") { Description = "MLflow run name (default: the --out folder's name)." };
        var command = new Command("pretrain", "Self-supervised pretraining (the main job); with no arguments, the tiny model on the embedded phantom corpus, a few minutes on a CPU.");
        foreach (var option in new Option[] { config, device, precision, output, seed, maxSteps, resume, strict, threads, deterministic, trackingUri, experiment, runName }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            TorchRuntime.EnsureLoaded();
            string? name = parse.GetValue(config);
            var run = name is null ? new RunConfig()
                : name is "tiny" or "small" or "base" or "large" ? new RunConfig { Model = name }
                : RunConfig.Load(name);
            if (parse.GetValue(threads) is { } n) TorchRuntime.SetThreads(n);
            if (parse.GetValue(deterministic)) Determinism.Enable(parse.GetValue(seed) ?? run.Seed, parse.GetValue(threads) ?? TorchRuntime.Threads);
            var overrides = new PretrainOverrides(parse.GetValue(device), parse.GetValue(precision), parse.GetValue(seed), parse.GetValue(maxSteps),
                parse.GetValue(resume), parse.GetValue(strict) ? true : null);
            string resumeHint = $"medformer pretrain --resume --out {parse.GetValue(output)}{(name is null ? "" : $" --config {name}")}";
            string outDir = parse.GetValue(output)!;
            PretrainJob.ApplyOverrides(run, overrides);
            using var tracked = StartTracking(run, overrides, outDir, parse.GetValue(trackingUri), parse.GetValue(experiment), parse.GetValue(runName));
            return Execute(run, outDir, overrides, resumeHint, tracked);
        });
        return command;
    }

    /// <summary>The MLflow run of this job (null with --tracking-uri none): params from the run config as it runs.</summary>
    static MlflowRun? StartTracking(RunConfig run, PretrainOverrides overrides, string outDir, string? trackingUri, string? experiment, string? runName)
    {
        string output = Path.GetFullPath(outDir);
        MlflowRun? tracked;
        try
        {
            tracked = Mlflow.StartRun(new MlflowRunOptions
            {
                TrackingUri = trackingUri,
                Experiment = experiment ?? (Environment.GetEnvironmentVariable("MLFLOW_EXPERIMENT_NAME") is { Length: > 0 } name ? name : "pretrain"),
                RunName = runName ?? Path.GetFileName(output),
                SourceName = "medformer pretrain",
                SpoolDirectory = Path.Combine(output, "mlflow-spool"),
                Tags = new Dictionary<string, string> { ["medformer.out"] = output, ["medformer.resume"] = overrides.Resume ? "True" : "False" },
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            throw new ArgumentException($"--tracking-uri {TrackingUri.Resolve(trackingUri)}: cannot log there ({e.Message}); --tracking-uri none turns tracking off", e);
        }
        if (tracked is null) return null;
        var parameters = RunParams.Flatten(JsonNode.Parse(PretrainJob.ToJson(run)));
        parameters["device"] = overrides.Device ?? run.Device ?? "cpu";
        tracked.LogParams(parameters.Select(p => KeyValuePair.Create(p.Key, (object?)p.Value)));
        return tracked;
    }

    /// <summary>A trainer log line as MLflow metrics at its step.</summary>
    static Dictionary<string, double> Metrics(TrainerLog log)
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

    static void EndTracking(MlflowRun? tracked, RunStatus status, string? error = null)
    {
        if (tracked is null) return;
        if (error is not null) tracked.SetTag("medformer.error", error.Length > 8000 ? error[..8000] : error);
        var outcome = tracked.End(status);
        if (outcome.Warning is { } warning) Console.Error.WriteLine("medformer pretrain: mlflow: " + warning);
        else Console.WriteLine($"mlflow: run {outcome.RunId} ({MlflowTags.StatusName(status)}) in {outcome.Location}");
    }

    static int Execute(RunConfig run, string outDir, PretrainOverrides overrides, string resumeHint, MlflowRun? tracked)
    {
        // Ctrl-C stops before the next step; the last checkpoint stays, and --resume continues from it.
        using var interrupt = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var progress = new ProgressLine(Console.IsOutputRedirected, "medformer pretrain");
        try
        {
            var result = PretrainJob.Run(run, outDir, overrides, log =>
            {
                progress.Show(log);
                tracked?.LogMetrics(Metrics(log), log.Step);
            }, progress.Notice, interrupt.Token);
            progress.Done();
            foreach (var (corpus, count) in result.Skipped) Console.WriteLine($"skipped {count} bad sample(s) of {corpus}; e.g. {result.SkipReasons.FirstOrDefault()}");
            var t = result.Training;
            string skipped = t.SkippedSteps > 0 ? $"; {t.SkippedSteps} non-finite step(s) skipped" : "";
            Console.WriteLine($"pretrained {t.Steps} steps in {t.Elapsed:hh\\:mm\\:ss} on {result.Device} ({result.Precision}); final loss {t.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)}{skipped}");
            Console.WriteLine($"checkpoint: {Path.GetFullPath(t.LastCheckpoint)}");
            Console.WriteLine($"model: {Path.GetFullPath(t.ModelDirectory)}");
            if (tracked is not null)
            {
                tracked.SetTags(new Dictionary<string, string> { ["medformer.checkpoint"] = Path.GetFullPath(t.LastCheckpoint), ["medformer.model"] = Path.GetFullPath(t.ModelDirectory) });
                tracked.LogArtifacts(t.ModelDirectory, "model");
            }
            EndTracking(tracked, RunStatus.Finished);
            return 0;
        }
        catch (OperationCanceledException)
        {
            progress.Done();
            Console.Error.WriteLine($"medformer pretrain: interrupted; continue with: {resumeHint}");
            EndTracking(tracked, RunStatus.Killed);
            return 130;
        }
        catch (Exception e) when (e is TrainingDivergedException or InvalidDataException or IOException)
        {
            progress.Done();
            Console.Error.WriteLine("medformer pretrain: " + e.Message);
            EndTracking(tracked, RunStatus.Failed, e.Message);
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
