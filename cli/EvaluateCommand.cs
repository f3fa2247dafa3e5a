using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Eval;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Medformer.Heads;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer evaluate</c>: runs an evaluation protocol (fractions or halves) on a labelled data set for each
/// initialisation and writes the report (Markdown table, CSV, JSON, PNG and SVG plots) into --out; rerun with the
/// same --out to continue an interrupted run.
/// </summary>
static class EvaluateCommand
{
    public static Command Create()
    {
        var protocol = ProtocolOptions.Create();
        var fineTuning = FineTuningOptions.Create();
        var output = OutputOptions.Create();
        var (trackingUri, experiment, runName) = Tracked.Options("evaluate");
        var command = new Command("evaluate", "Fine-tune each initialisation on fractions of the labels over several seeds and report mean ± std per cell.");
        foreach (var option in (Option[])[.. protocol.All, .. fineTuning.All, .. output.All, trackingUri, experiment, runName])
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output.Out, output.Force, "evaluate");
            TorchRuntime.EnsureLoaded();
            var spec = ProtocolSpec.Parse(parse.GetValue(protocol.Protocol)!);
            if (parse.GetValue(protocol.Fractions) is { } list) spec = spec with { Fractions = ParseFractions(list) };
            if (parse.GetValue(protocol.Seeds) is { } n) spec = spec with { Seeds = n };
            spec.Validate();
            var fineTune = new FineTuneSettings
            {
                FineTune = FineTuneSettings.Recipe with
                {
                    MaxSteps = parse.GetValue(fineTuning.MaxSteps), LearningRate = parse.GetValue(fineTuning.Lr), BatchSize = parse.GetValue(fineTuning.Batch),
                    Precision = PrecisionNames.Parse(parse.GetValue(output.Precision)!), Roi = ParseRoi(parse.GetValue(protocol.Roi)),
                },
                Pooling = ParsePooling(parse.GetValue(fineTuning.Pooling)!), Selection = parse.GetValue(fineTuning.Select),
            };
            fineTune.Validate();
            var options = new EvaluationOptions(spec, TaskSpec(parse.GetValue(protocol.Task)!), parse.GetValue(protocol.Init)!, parse.GetValue(output.Out)!,
                fineTune, parse.GetValue(fineTuning.Config), parse.GetValue(output.Device)!, parse.GetValue(protocol.Head)!);
            EvaluationJob.Validate(options);
            claimed.Mark();
            using var tracked = StartTracking(options, parse.GetValue(trackingUri), parse.GetValue(experiment), parse.GetValue(runName));
            return Execute(options, parse.GetValue(output.Json), tracked);
        });
        return command;
    }

    /// <summary>What is compared on what: the protocol and its cells, the labelled data, the head, the initialisations.</summary>
    sealed record ProtocolOptions(Option<string> Protocol, Option<string[]> Task, Option<string> Head, Option<string[]> Init, Option<string?> Roi,
        Option<string?> Fractions, Option<int?> Seeds)
    {
        public Option[] All => [Protocol, Task, Head, Init, Roi, Fractions, Seeds];

        public static ProtocolOptions Create() => new(
            new Option<string>("--protocol") { Description =
                "fractions (MedMNIST: 1%, 10%, 100%, 3 seeds) or halves (the seed talk's: train on 20/50/100% of half the training " +
                    "split, choose on the other half, 6 seeds).",
                    DefaultValueFactory = _ => "fractions" },
            new Option<string[]>("--task")
            {
                Description =
                    "The labelled data, as finetune's --task and a run config's data: phantom:2d|3d (embedded), " +
                        "medmnist:NAME[,size=64] (from $MEDFORMER_HOME/medmnist), "
                    + "npz:FILE[,subset=NAME] (MedMNIST layout), mnist:FOLDER, msd:FOLDER (a Decathlon task) or petct:FOLDER[,in=60,out=90] "
                    + "(PET studies); msd and petct cases are split 70/10/20% into training, validation and test. (The older two words, "
                    + "phantom 2d, still read.)",
                // Two words is the older spelling (phantom 2d), read with a deprecation line.
                Arity = new ArgumentArity(1, 2), AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["phantom:2d"],
            },
            new Option<string>("--head") { Description =
                "The head: classification, segmentation[:…], restoration[:…], super-resolution[:scale=2|4] or translation[:…] (settings as finetune's --head).",
                    DefaultValueFactory = _ => "classification" },
            new Option<string[]>("--init") { Description =
                "An initialisation to compare, repeatable: random, gaussian (the restoration baseline), a model folder, or NAME=FOLDER (default: random).",
                    DefaultValueFactory = _ => ["random"] },
            new Option<string?>("--roi") { Description =
                "Dense heads: the training crop and sliding window, e.g. 32,32,32 (default: whole images, which must then share one shape)." },
            new Option<string?>("--fractions") { Description = "Fractions of the training labels, comma-separated (default: the protocol's)." },
            new Option<int?>("--seeds") { Description = "Runs per cell (default: the protocol's)." });
    }

    /// <summary>How each run fine-tunes: steps, learning rate, batch, pooling, the metric that picks its step, the random initialisation's model.</summary>
    sealed record FineTuningOptions(Option<long> MaxSteps, Option<double> Lr, Option<int> Batch, Option<string> Pooling, Option<string?> Select,
        Option<string?> Config)
    {
        public Option[] All => [MaxSteps, Lr, Batch, Pooling, Select, Config];

        public static FineTuningOptions Create()
        {
            var recipe = FineTuneSettings.Recipe;  // the defaults live there, once
            return new(
                new Option<long>("--max-steps") { Description = "Fine-tuning steps per run.", DefaultValueFactory = _ => recipe.MaxSteps },
                new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup then cosine).", DefaultValueFactory = _ => recipe.LearningRate },
                new Option<int>("--batch-size") { Description = "Samples per step.", DefaultValueFactory = _ => recipe.BatchSize },
                new Option<string>("--pooling") { Description = "How the head pools the latents: flatten, mean or query.",
                    DefaultValueFactory = _ => "flatten" },
                new Option<string?>("--select") { Description =
                    "The validation metric that picks each run's step: auc or acc (classification, default auc), dice (segmentation), mse, l1 or " +
                        "ssim (image-to-image, default mse)." },
                new Option<string?>("--config") { Description =
                    "The random initialisation's model: a preset or config.json (default: the first checkpoint's config, else tiny)." });
        }
    }

    /// <summary>Where it runs and writes: the device and precision, the output folder, the report's form.</summary>
    sealed record OutputOptions(Option<string> Device, Option<string> Precision, Option<string> Out, Option<bool> Force, Option<bool> Json)
    {
        public Option[] All => [Device, Precision, Out, Force, Json];

        public static OutputOptions Create() => new(
            new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => DeviceSpec.DefaultSpec },
            new Option<string>("--precision") { Description = "fp32, bf16 or fp16 (bf16 pays from small up on a CPU with AVX512-BF16).",
                DefaultValueFactory = _ => new TrainerOptions().Precision.Name() },
            new Option<string>("--out") { Description = "Folder for the results (cells.jsonl, resumable) and the report. " + OutputOption.Rule,
                DefaultValueFactory = _ => Path.Combine("runs",
                "evaluate") },
            OutputOption.Force(),
            new Option<bool>("--json") { Description = "Print one JSON object (the report's tables and files); progress goes to stderr." });
    }

    /// <summary>The MLflow run of this invocation (null with --tracking-uri none): the protocol and its options as params.</summary>
    static MlflowRun? StartTracking(EvaluationOptions options, string? trackingUri, string? experiment, string? runName)
    {
        var tracked = Tracked.Start("evaluate", options.Out, trackingUri, experiment, runName);
        tracked?.LogParams(new Dictionary<string, object?>
        {
            ["protocol"] = options.Protocol.Name,
            ["head"] = options.Head,
            ["roi"] = options.FineTune.FineTune.Roi is { } roi ? string.Join(",", roi) : null,
            ["task"] = options.Task,
            ["inits"] = string.Join(" ", options.Inits),
            ["fractions"] = string.Join(",", options.Protocol.Fractions.Select(f => f.ToString("R", CultureInfo.InvariantCulture))),
            ["seeds"] = options.Protocol.Seeds,
            ["max_steps"] = options.FineTune.FineTune.MaxSteps,
            ["lr"] = options.FineTune.FineTune.LearningRate,
            ["batch_size"] = options.FineTune.FineTune.BatchSize,
            ["pooling"] = options.FineTune.Pooling.ToString().ToLowerInvariant(),
            ["selection"] = options.FineTune.Selection,
            ["precision"] = MixedPrecision.Resolve(options.FineTune.FineTune.Precision, DeviceSpec.Resolve(options.Device)).Effective.Name(),
            ["precision_requested"] = options.FineTune.FineTune.Precision.Name(),
            ["config"] = options.Config,
            ["device"] = options.Device,
        });
        return tracked;
    }

    /// <summary>
    /// MLflow's name for a cell's metric: METRIC.INIT.fFRACTION (a series over seeds: the seed is the step), with no
    /// spaces (<c>acc.random_init.f0.1</c>; the report's tables keep the row names, "random init").
    /// </summary>
    static string MetricKey(string metric, string init, double fraction) =>
        $"{metric}.{new string([.. init.Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_')])}" +
            $".f{fraction.ToString("R", CultureInfo.InvariantCulture)}";

    static void LogCell(MlflowRun? tracked, CellResult cell)
    {
        foreach (var (metric, value) in cell.Metrics)
            if (double.IsFinite(value)) tracked?.LogMetric(MetricKey(metric, cell.Init, cell.Fraction), value, step: cell.Seed);
    }

    /// <summary>The cells kept from earlier invocations, the tables' means and stds, and the report folder's files.</summary>
    static void LogReport(MlflowRun? tracked, EvaluationOutcome outcome, IReadOnlySet<CellKey> loggedNow, string outDir)
    {
        if (tracked is null) return;
        foreach (var cell in outcome.Results.Where(c => !loggedNow.Contains(c.Key))) LogCell(tracked, cell);
        foreach (var group in outcome.Results.GroupBy(c => (c.Init, c.Fraction)))
            foreach (string metric in group.SelectMany(c => c.Metrics.Keys).Distinct())
            {
                var summary = MeanStd.Of(group.Select(c => c.Metrics.GetValueOrDefault(metric, double.NaN)));
                if (summary.Count == 0) continue;
                tracked.LogMetric(MetricKey(metric + "_mean", group.Key.Init, group.Key.Fraction), summary.Mean);
                // One run has no spread: its cell shows n=1, and no _std of 0 is logged.
                if (summary.Count >= 2) tracked.LogMetric(MetricKey(metric + "_std", group.Key.Init, group.Key.Fraction), summary.Std);
            }
        foreach (string file in outcome.Report.All) tracked.LogArtifact(file, "report");
        tracked.LogArtifact(Path.Combine(outDir, "cells.jsonl"), "report");
    }

    static int Execute(EvaluationOptions options, bool json, MlflowRun? tracked)
    {
        using var interrupt = new Interruption();  // Ctrl-C or SIGTERM: stop at the next step boundary
        var say = json ? Console.Error : Console.Out;
        var loggedNow = new HashSet<CellKey>();
        try
        {
            var outcome = EvaluationJob.Run(options, say.WriteLine, finished: cell =>
            {
                LogCell(tracked, cell);
                loggedNow.Add(cell.Key);
            }, cancel: interrupt.Token);
            LogReport(tracked, outcome, loggedNow, options.Out);
            if (json)
            {
                var report = JsonNode.Parse(File.ReadAllText(outcome.Report.Json))!.AsObject();
                report["out"] = Path.GetFullPath(options.Out);
                report["trained"] = outcome.Trained;
                report["kept"] = outcome.Results.Count - outcome.Trained;
                report["files"] = new JsonArray([.. outcome.Report.All.Select(f => (JsonNode)Path.GetFullPath(f))]);
                Tracked.End(tracked, RunStatus.Finished, "evaluate", Console.Error);
                Console.WriteLine(report.ToJsonString());
            }
            else
            {
                Console.WriteLine();
                Console.Write(string.Join("\n", File.ReadAllLines(outcome.Report.Markdown).TakeWhile(l => !l.StartsWith("Each run",
                    StringComparison.Ordinal))));
                Console.WriteLine($"\nreport: {Path.GetFullPath(outcome.Report.Markdown)} ({outcome.Trained} runs trained, " +
                    $"{outcome.Results.Count - outcome.Trained} kept from earlier)");
                Tracked.End(tracked, RunStatus.Finished, "evaluate", Console.Out);
            }
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"medformer evaluate: interrupted; the finished runs are in {Path.GetFullPath(options.Out)}; the same command continues");
            Tracked.End(tracked, RunStatus.Killed, "evaluate", Console.Error);
            return interrupt.ExitCode;
        }
        catch (Exception e) when (ExitCodes.IsFailure(e))
        {
            return Tracked.Fail(tracked, "evaluate", e, Console.Error);
        }
        catch (ArgumentException e)
        {
            // A cell's settings can be wrong only once it runs: the run ends as failed, the line and status are ExitCodes'.
            Tracked.End(tracked, RunStatus.Failed, "evaluate", Console.Error, e.Message);
            throw;
        }
    }

    /// <summary>--task as one argument; the older two words (phantom 2d) with a deprecation line on stderr.</summary>
    static string TaskSpec(string[] words)
    {
        if (EvaluationJob.FromWords(words) is not { } joined) return words[0];
        Console.Error.WriteLine($"medformer evaluate: --task '{string.Join(" ", words)}' is deprecated; write --task {joined}");
        return joined;
    }

    static double[] ParseFractions(string text) => [.. text.Split(',').Select(part =>
        double.TryParse(part.Trim().TrimEnd('%'), NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            ? part.Trim().EndsWith('%') ? value / 100 : value
            : throw new ArgumentException($"--fractions '{text}': expected numbers such as 0.01,0.1,1 (or 1%,10%,100%)"))];

    static long[]? ParseRoi(string? text) => text?.Split(',').Select(p => long.TryParse(p.Trim(), NumberStyles.None, CultureInfo.InvariantCulture,
        out long n) && n > 0 ? n
        : throw new ArgumentException($"--roi '{text}': expected positive sizes, one per spatial axis, such as 32,32,32")).ToArray();

    static Pooling ParsePooling(string text) => text switch
    {
        "flatten" => Pooling.Flatten,
        "mean" => Pooling.Mean,
        "query" => Pooling.Query,
        _ => throw new ArgumentException($"--pooling '{text}': expected flatten, mean or query"),
    };
}
