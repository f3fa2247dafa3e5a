using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Pretrain;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking;
using Medformer.Runtime.Distributed;
using TorchSharp;

namespace Medformer.Cli;

/// <summary><c>medformer pretrain</c>: the main job. With no arguments, the tiny model on the embedded phantom corpus.</summary>
static class PretrainCommand
{
    public static Command Create()
    {
        var training = TrainingOptions.Create();
        var (trackingUri, experiment, runName) = Tracked.Options("pretrain");
        var launcher = LauncherOptions.Create();
        var command = new Command("pretrain",
            "Self-supervised pretraining (the main job); with no arguments, the tiny model on the embedded phantom corpus, a few minutes on a CPU.");
        foreach (var option in (Option[])[.. training.All, trackingUri, experiment, runName, .. launcher.All]) command.Options.Add(option);
        command.SetAction(parse =>
        {
            // Before anything starts, the launcher's ranks included: a refused --out is one line, written nowhere.
            var claimed = OutputOption.Claim(parse, training.Out, training.Force, "pretrain");
            if (parse.GetValue(launcher.ProcessesPerNode) is { } processes) return Launch(parse, launcher, processes);
            TorchRuntime.EnsureLoaded();
            var job = Rank();
            string? name = parse.GetValue(training.Config);
            var run = name is null ? new RunConfig()
                : name is "tiny" or "small" or "base" or "large" ? new RunConfig { Model = name }
                : RunConfig.Load(name);
            if (parse.GetValue(training.Threads) is { } n) TorchRuntime.SetThreads(n);
            // share the cores
            else if (job is { LocalWorldSize: > 1 } local) TorchRuntime.SetThreads(Math.Max(1, Environment.ProcessorCount / local.LocalWorldSize));
            if (parse.GetValue(training.Deterministic))
                Determinism.Enable(parse.GetValue(training.Seed) ?? run.Seed, parse.GetValue(training.Threads) ?? TorchRuntime.Threads);
            var overrides = new PretrainOverrides(parse.GetValue(training.Device), parse.GetValue(training.Precision), parse.GetValue(training.Seed),
                parse.GetValue(training.MaxSteps), parse.GetValue(training.Resume), parse.GetValue(training.Strict) ? true : null);
            string resumeHint = $"medformer pretrain --resume --out {parse.GetValue(training.Out)}{(name is null ? "" : $" --config {name}")}";
            string outDir = parse.GetValue(training.Out)!;
            // Everything that can be wrong with the arguments is found here, before an output folder or an MLflow run exists.
            var plan = PretrainJob.Check(run, outDir, overrides, job?.LocalRank);
            // Rank 0 speaks for a data-parallel job, in MLflow as on the terminal, and marks the folder.
            if (job is not { Rank: > 0 }) claimed.Mark();
            using var tracked = job is { Rank: > 0 } ? null
                : StartTracking(plan.Config, plan, overrides, outDir, parse.GetValue(trackingUri), parse.GetValue(experiment), parse.GetValue(runName));
            if (tracked?.RunId is { } runId) overrides = overrides with { RunId = runId };
            return Execute(plan, outDir, overrides, resumeHint, job, tracked);
        });
        return command;
    }

    /// <summary>The run: its config, where it runs and writes, how long, and how faithfully it repeats.</summary>
    sealed record TrainingOptions(Option<string?> Config, Option<string?> Device, Option<string?> Precision, Option<string> Out, Option<bool> Force,
        Option<long?> Seed, Option<long?> MaxSteps, Option<bool> Resume, Option<bool> Strict, Option<int?> Threads, Option<bool> Deterministic)
    {
        public Option[] All => [Config, Device, Precision, Out, Force, Seed, MaxSteps, Resume, Strict, Threads, Deterministic];

        public static TrainingOptions Create() => new(
            new Option<string?>("--config") { Description =
                "A run config (YAML or JSON), or a model preset (tiny, small, base, large) for the default run with that model." },
            new Option<string?>("--device") { Description = "cpu or cuda[:N] (default: the config's, else cpu)." },
            new Option<string?>("--precision") { Description = "fp32, bf16 or fp16 (default: the config's, fp32)." },
            new Option<string>("--out") { Description =
                "Output folder: checkpoints and the final model (model/); rerun or --resume with the same one. " + OutputOption.Rule,
                DefaultValueFactory = _ => Path.Combine("runs", "pretrain") },
            OutputOption.Force(),
            new Option<long?>("--seed") { Description = "Seed of every random draw (default: the config's, 0)." },
            new Option<long?>("--max-steps") { Description = "Optimizer steps (default: the config's)." },
            new Option<bool>("--resume") { Description = "Continue from the newest checkpoint in --out." },
            new Option<bool>("--strict") { Description = "Stop at the first bad sample instead of skipping it." },
            new Option<int?>("--threads") { Description = "CPU threads for libtorch (default: all cores)." },
            new Option<bool>("--deterministic") { Description = "Bitwise-reproducible CPU run (fixes threads, deterministic kernels)." });
    }

    /// <summary>Data parallel, torchrun's flags: the processes this command starts here, and where the job's machines meet.</summary>
    sealed record LauncherOptions(Option<int?> ProcessesPerNode, Option<int> Nodes, Option<int> NodeRank, Option<string> MasterAddress,
        Option<int> MasterPort)
    {
        public Option[] All => [ProcessesPerNode, Nodes, NodeRank, MasterAddress, MasterPort];

        public static LauncherOptions Create() => new(
            new Option<int?>("--nproc-per-node") { Description =
                "Data parallel: start this many processes here (torchrun's flag); each trains on its own batches of batch.size." },
            new Option<int>("--nnodes") { Description = "Data parallel: machines in the job.", DefaultValueFactory = _ => 1 },
            new Option<int>("--node-rank") { Description = "Data parallel: this machine's index, 0 to --nnodes - 1.", DefaultValueFactory = _ => 0 },
            new Option<string>("--master-addr") { Description = "Data parallel: the address of the machine of rank 0.",
                DefaultValueFactory = _ => "127.0.0.1" },
            new Option<int>("--master-port") { Description = "Data parallel: a free TCP port on the machine of rank 0.",
                DefaultValueFactory = _ => DistributedEnvironment.DefaultPort });
    }

    /// <summary>--nproc-per-node: starts the ranks, each this command without the launcher's options, and waits for them.</summary>
    static int Launch(ParseResult parse, LauncherOptions launcher, int processes)
    {
        if (DistributedEnvironment.Detect() is not null)
            throw new ArgumentException("--nproc-per-node starts the ranks itself; this process already is one (RANK and WORLD_SIZE are set)");
        var options = new LaunchOptions(processes, parse.GetValue(launcher.Nodes), parse.GetValue(launcher.NodeRank), parse.GetValue(launcher.MasterAddress)!,
            parse.GetValue(launcher.MasterPort));
        return LocalLauncher.Run(Environment.ProcessPath!, WithoutLaunchOptions(Environment.GetCommandLineArgs()[1..], launcher.All), options,
            message => Console.Error.WriteLine("medformer pretrain: " + message));
    }

    /// <summary>
    /// This process's rank in a data-parallel job (null when alone). A multi-node rank without the store's secret is
    /// refused here, as a bad argument, before an output folder or an MLflow run exists.
    /// </summary>
    static DistributedEnvironment? Rank()
    {
        var job = DistributedEnvironment.Detect();
        if (job is null) return null;
        try
        {
            StoreSecret.Resolve(job.IsLoopback);
        }
        catch (DistributedException e)
        {
            throw new ArgumentException(e.Message, e);
        }
        return job;
    }

    /// <summary>
    /// The MLflow run of this job (null with --tracking-uri none): params from the run config as it runs, the
    /// precision being the one that runs on this machine. A resumed job continues the run its checkpoint names.
    /// </summary>
    static MlflowRun? StartTracking(RunConfig run, PretrainPlan plan, PretrainOverrides overrides, string outDir, string? trackingUri,
        string? experiment, string? runName)
    {
        var tracked = Tracked.Start("pretrain", outDir, trackingUri, experiment, runName,
            new Dictionary<string, string> { ["medformer.resume"] = overrides.Resume ? "True" : "False" }, plan.ResumeRunId);
        if (tracked is null) return null;
        if (tracked.Resumed)
        {
            // Its params are logged already (MLflow keeps them immutable); the tag says where it went on from.
            tracked.SetTag("medformer.resumed_from", Path.GetFullPath(plan.ResumeFrom!));
            return tracked;
        }
        var parameters = RunParams.Flatten(JsonNode.Parse(PretrainJob.ToJson(run)));
        parameters["device"] = plan.Device.ToString();
        parameters["precision"] = plan.Precision.Name();
        parameters["precision_requested"] = plan.RequestedPrecision.Name();
        tracked.LogParams(parameters.Select(p => KeyValuePair.Create(p.Key, (object?)p.Value)));
        return tracked;
    }

    /// <summary>The command line for the ranks: everything but the launcher's own options.</summary>
    static List<string> WithoutLaunchOptions(string[] args, Option[] launch)
    {
        var names = launch.Select(o => o.Name).ToHashSet();
        var kept = new List<string>();
        for (int i = 0; i < args.Length; i++)
        {
            string name = args[i].Split('=', 2)[0];
            if (!names.Contains(name)) kept.Add(args[i]);
            else if (!args[i].Contains('=')) i++;   // and its value
        }
        return kept;
    }

    static int Execute(PretrainPlan plan, string outDir, PretrainOverrides overrides, string resumeHint, DistributedEnvironment? job, MlflowRun? tracked)
    {
        ProcessGroup? group;
        try
        {
            group = job is null ? null : ProcessGroup.Connect(job);
        }
        catch (DistributedException e)
        {
            // The rank that could not join names itself: the others' lines name it too.
            return ExitCodes.Report($"medformer pretrain (rank {job!.Rank})", e);
        }
        string who = job is null ? "medformer pretrain" : $"medformer pretrain (rank {job.Rank})";
        bool quiet = job is { Rank: > 0 };   // only rank 0 shows progress and the result
        // Ctrl-C or SIGTERM: the step in progress finishes and is checkpointed, so --resume continues from it.
        using var interrupt = new Interruption();
        var progress = new ProgressLine(Console.IsOutputRedirected, "medformer pretrain");
        bool clean = false;
        try
        {
            var result = PretrainJob.Run(plan, outDir, overrides, quiet ? null : log =>
            {
                progress.Show(log);
                tracked?.LogMetrics(Tracked.Metrics(log), log.Step);
            }, quiet ? null : progress.Notice, interrupt.Token, group);
            progress.Done();
            clean = true;
            if (!quiet) Report(result, group, tracked);
            return ExitCodes.Done;
        }
        catch (OperationCanceledException e)
        {
            progress.Done();
            clean = true;   // every rank stopped after the same step
            string where = e is TrainingInterruptedException stopped ? $" after step {stopped.Step}; checkpoint: {Path.GetFullPath(stopped.Checkpoint)}" : "";
            if (!quiet) Console.Error.WriteLine($"medformer pretrain: interrupted ({interrupt.Signal ?? "cancelled"}){where}; continue with: {resumeHint}");
            Tracked.End(tracked, RunStatus.Killed, "pretrain", Console.Error);
            return interrupt.ExitCode;
        }
        catch (Exception e) when (ExitCodes.IsFailure(e))
        {
            progress.Done();
            return Tracked.Fail(tracked, "pretrain", e, Console.Out, who);
        }
        finally
        {
            // A failing rank leaves without a goodbye, so the others' next collective names it.
            if (clean) group?.Dispose();
            else group?.Abort();
        }
    }

    static string F4(double value) => value.ToString("F4", CultureInfo.InvariantCulture);

    /// <summary>What rank 0 says of a finished job, and its MLflow run's tags, model and end.</summary>
    static void Report(PretrainResult result, ProcessGroup? group, MlflowRun? tracked)
    {
        foreach (var (corpus, count) in result.Skipped)
            Console.WriteLine($"skipped {count} bad sample(s) of {corpus}; e.g. {result.SkipReasons.FirstOrDefault()}");
        var t = result.Training;
        string skipped = t.SkippedSteps > 0 ? $"; {t.SkippedSteps} non-finite step(s) skipped" : "";
        string processes = group is null ? "" : $" × {group.WorldSize} processes";
        Console.WriteLine($"pretrained {t.Steps} steps in {t.Elapsed:hh\\:mm\\:ss} on {result.Device}{processes} ({result.Precision}); final loss " +
            $"{t.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)}{skipped}");
        if (result.Objectives.Count > 0)
            Console.WriteLine("objectives (last tenth of the run; chance: a model that learned nothing): " + string.Join(", ",
                result.Objectives.Select(o => $"{o.Name} {F4(o.FinalLoss)}{(o.ChanceLoss is { } c ? $" (chance {F4(c)})" : "")}")));
        foreach (var o in result.Objectives.Where(o => o.AtChance))
            Console.WriteLine($"warning: {o.Name} ended at its chance loss ({F4(o.FinalLoss)} against " +
                $"{F4(o.ChanceLoss!.Value)}): it learned nothing from this data");
        Console.WriteLine($"checkpoint: {Path.GetFullPath(t.LastCheckpoint)}");
        Console.WriteLine($"model: {Path.GetFullPath(t.ModelDirectory)}");
        if (tracked is not null)
        {
            tracked.SetTags(new Dictionary<string, string> { ["medformer.checkpoint"] = Path.GetFullPath(t.LastCheckpoint),
                ["medformer.model"] = Path.GetFullPath(t.ModelDirectory) });
            tracked.LogArtifacts(t.ModelDirectory, "model");
        }
        Tracked.End(tracked, RunStatus.Finished, "pretrain", Console.Out);
    }
}
