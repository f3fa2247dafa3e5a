using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Eval;
using Medformer.Eval.Protocols;
using Medformer.Heads;
using Medformer.Pretrain.Training;
using Medformer.Runtime;

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
        var protocol = new Option<string>("--protocol") { Description = "fractions (MedMNIST: 1%, 10%, 100%, 3 seeds) or halves (the seed talk's: train on 20/50/100% of half the training split, choose on the other half, 6 seeds).", DefaultValueFactory = _ => "fractions" };
        var task = new Option<string[]>("--task")
        {
            Description = "The labelled data: phantom [2d|3d] (embedded), medmnist NAME (from $MEDFORMER_HOME/medmnist), npz FILE (MedMNIST layout) or mnist FOLDER.",
            Arity = new ArgumentArity(1, 2), AllowMultipleArgumentsPerToken = true, DefaultValueFactory = _ => ["phantom"],
        };
        var init = new Option<string[]>("--init") { Description = "An initialisation to compare, repeatable: random, a model folder, or NAME=FOLDER (default: random).", DefaultValueFactory = _ => ["random"] };
        var fractions = new Option<string?>("--fractions") { Description = "Fractions of the training labels, comma-separated (default: the protocol's)." };
        var seeds = new Option<int?>("--seeds") { Description = "Runs per cell (default: the protocol's)." };
        var maxSteps = new Option<long>("--max-steps") { Description = "Fine-tuning steps per run.", DefaultValueFactory = _ => 300 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup then cosine).", DefaultValueFactory = _ => 1e-3 };
        var batch = new Option<int>("--batch-size") { Description = "Samples per step.", DefaultValueFactory = _ => 32 };
        var pooling = new Option<string>("--pooling") { Description = "How the head pools the latents: flatten, mean or query.", DefaultValueFactory = _ => "flatten" };
        var select = new Option<string>("--select") { Description = "The validation metric that picks each run's step: auc or acc.", DefaultValueFactory = _ => "auc" };
        var config = new Option<string?>("--config") { Description = "The random initialisation's model: a preset or config.json (default: the first checkpoint's config, else tiny)." };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => "cpu" };
        var precision = new Option<string>("--precision") { Description = "fp32, bf16 or fp16.", DefaultValueFactory = _ => "bf16" };
        var output = new Option<string>("--out") { Description = "Folder for the results (cells.jsonl, resumable) and the report.", DefaultValueFactory = _ => Path.Combine("runs", "evaluate") };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (the report's tables and files); progress goes to stderr." };
        var command = new Command("evaluate", "Fine-tune each initialisation on fractions of the labels over several seeds and report mean ± std per cell.");
        foreach (var option in new Option[] { protocol, task, init, fractions, seeds, maxSteps, lr, batch, pooling, select, config, device, precision, output, json })
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            TorchRuntime.EnsureLoaded();
            var spec = ProtocolSpec.Parse(parse.GetValue(protocol)!);
            if (parse.GetValue(fractions) is { } list) spec = spec with { Fractions = ParseFractions(list) };
            if (parse.GetValue(seeds) is { } n) spec = spec with { Seeds = n };
            spec.Validate();
            var fineTune = new FineTuneSettings(parse.GetValue(maxSteps), parse.GetValue(lr), parse.GetValue(batch),
                Precision: PrecisionNames.Parse(parse.GetValue(precision)!), Pooling: ParsePooling(parse.GetValue(pooling)!), Selection: parse.GetValue(select)!);
            fineTune.Validate();
            var options = new EvaluationOptions(spec, parse.GetValue(task)!, parse.GetValue(init)!, parse.GetValue(output)!, fineTune, parse.GetValue(config), parse.GetValue(device)!);
            return Execute(options, parse.GetValue(json));
        });
        return command;
    }

    static int Execute(EvaluationOptions options, bool json)
    {
        using var interrupt = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) =>
        {
            e.Cancel = true;
            interrupt.Cancel();
        };
        Console.CancelKeyPress += onCancel;
        var say = json ? Console.Error : Console.Out;
        try
        {
            var outcome = EvaluationJob.Run(options, say.WriteLine, cancel: interrupt.Token);
            if (json)
            {
                var report = JsonNode.Parse(File.ReadAllText(outcome.Report.Json))!.AsObject();
                report["out"] = Path.GetFullPath(options.Out);
                report["trained"] = outcome.Trained;
                report["kept"] = outcome.Results.Count - outcome.Trained;
                report["files"] = new JsonArray([.. outcome.Report.All.Select(f => (JsonNode)Path.GetFullPath(f))]);
                Console.WriteLine(report.ToJsonString());
            }
            else
            {
                Console.WriteLine();
                Console.Write(string.Join("\n", File.ReadAllLines(outcome.Report.Markdown).TakeWhile(l => !l.StartsWith("Each run", StringComparison.Ordinal))));
                Console.WriteLine($"\nreport: {Path.GetFullPath(outcome.Report.Markdown)} ({outcome.Trained} runs trained, {outcome.Results.Count - outcome.Trained} kept from earlier)");
            }
            return 0;
        }
        catch (OperationCanceledException)
        {
            Console.Error.WriteLine($"medformer evaluate: interrupted; the finished runs are in {Path.GetFullPath(options.Out)}; the same command continues");
            return 130;
        }
        catch (Exception e) when (e is TrainingDivergedException or InvalidDataException or IOException)
        {
            Console.Error.WriteLine("medformer evaluate: " + e.Message);
            return 1;
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
    }

    static double[] ParseFractions(string text) => [.. text.Split(',').Select(part =>
        double.TryParse(part.Trim().TrimEnd('%'), NumberStyles.Float, CultureInfo.InvariantCulture, out double value)
            ? part.Trim().EndsWith('%') ? value / 100 : value
            : throw new ArgumentException($"--fractions '{text}': expected numbers such as 0.01,0.1,1 (or 1%,10%,100%)"))];

    static Pooling ParsePooling(string text) => text switch
    {
        "flatten" => Pooling.Flatten,
        "mean" => Pooling.Mean,
        "query" => Pooling.Query,
        _ => throw new ArgumentException($"--pooling '{text}': expected flatten, mean or query"),
    };
}
