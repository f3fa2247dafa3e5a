using System.CommandLine;
using System.Globalization;
using Medformer.Pretrain;
using Medformer.Pretrain.Training;
using Medformer.Runtime;
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
        var command = new Command("pretrain", "Self-supervised pretraining (the main job); with no arguments, the tiny model on the embedded phantom corpus, a few minutes on a CPU.");
        foreach (var option in new Option[] { config, device, precision, output, seed, maxSteps, resume, strict, threads, deterministic }) command.Options.Add(option);
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
            return Execute(run, parse.GetValue(output)!, overrides, resumeHint);
        });
        return command;
    }

    static int Execute(RunConfig run, string outDir, PretrainOverrides overrides, string resumeHint)
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
            var result = PretrainJob.Run(run, outDir, overrides, progress.Show, progress.Notice, interrupt.Token);
            progress.Done();
            foreach (var (corpus, count) in result.Skipped) Console.WriteLine($"skipped {count} bad sample(s) of {corpus}; e.g. {result.SkipReasons.FirstOrDefault()}");
            var t = result.Training;
            string skipped = t.SkippedSteps > 0 ? $"; {t.SkippedSteps} non-finite step(s) skipped" : "";
            Console.WriteLine($"pretrained {t.Steps} steps in {t.Elapsed:hh\\:mm\\:ss} on {result.Device} ({result.Precision}); final loss {t.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)}{skipped}");
            Console.WriteLine($"checkpoint: {Path.GetFullPath(t.LastCheckpoint)}");
            Console.WriteLine($"model: {Path.GetFullPath(t.ModelDirectory)}");
            return 0;
        }
        catch (OperationCanceledException)
        {
            progress.Done();
            Console.Error.WriteLine($"medformer pretrain: interrupted; continue with: {resumeHint}");
            return 130;
        }
        catch (Exception e) when (e is TrainingDivergedException or InvalidDataException or IOException)
        {
            progress.Done();
            Console.Error.WriteLine("medformer pretrain: " + e.Message);
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }
}
