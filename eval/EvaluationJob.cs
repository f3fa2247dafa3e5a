using Medformer.Datasets.Corpora;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Medformer.Heads;
using Medformer.Training;
using Medformer.Runtime;

namespace Medformer.Eval;

/// <summary>What <c>medformer evaluate</c> runs: a protocol on a data set for a list of initialisations.</summary>
/// <param name="Task">The labelled data in <see cref="DataSource"/>'s grammar: phantom:2d, medmnist:NAME, npz:FILE[,subset=NAME], mnist:FOLDER, msd:FOLDER or
/// petct:FOLDER.</param>
/// <param name="Inits">"random", model folders, or NAME=FOLDER.</param>
/// <param name="Config">The random initialisation's model: a preset or config.json (default: the first checkpoint's, else tiny).</param>
/// <param name="Head">classification, or a dense head with its settings as --head takes them (segmentation, restoration, …).</param>
public sealed record EvaluationOptions(
    ProtocolSpec Protocol,
    string Task,
    IReadOnlyList<string> Inits,
    string Out,
    FineTuneSettings FineTune,
    string? Config = null,
    string? Device = null,
    string Head = "classification");

/// <summary>What a run left: every requested cell's result, the settings they were made with, and the report's files.</summary>
public sealed record EvaluationOutcome(IReadOnlyList<CellResult> Results, IReadOnlyDictionary<string, string> Settings, ReportFiles Report, int Trained);

/// <summary>
/// The evaluation job: opens the data, runs the protocol's cells through fine-tuning with the head
/// (<see cref="ClassificationCells"/> or <see cref="DenseCells"/>; resuming from the results already in
/// <see cref="EvaluationOptions.Out"/>), and writes the report there.
/// </summary>
public static class EvaluationJob
{
    public static EvaluationOutcome Run(EvaluationOptions options, Action<string>? log = null, Action<TrainerLog>? progress = null,
        Action<CellResult>? finished = null, CancellationToken cancel = default)
    {
        var inits = options.Inits.Select(Initialisation.Parse).ToList();
        var randomConfig = options.Config is { } name ? MedformerConfig.Resolve(name)
            : inits.FirstOrDefault(i => i.Checkpoint is not null) is { Checkpoint: { } folder } ? Checkpoint.ReadConfig(folder)
            : MedformerConfig.Tiny;
        var device = DeviceSpec.Resolve(options.Device);
        using var data = OpenData(options.Task);
        ICellTrainer cells = HeadRegistry.ParseSpec(options.Head).Kind == ClassificationHead.KindName
            ? new ClassificationCells(data, options.FineTune, randomConfig, device, progress)
            : new DenseCells(data, options.Head, options.FineTune, randomConfig, device, progress);
        using var _ = cells as IDisposable;
        var settings = ProtocolRunner.Settings(options.Protocol, cells);
        var store = new ResultStore(options.Out, settings);
        int trained = 0;
        var results = ProtocolRunner.Run(options.Protocol, data, inits, cells, store, log, result =>
        {
            trained++;
            finished?.Invoke(result);
        }, cancel);
        string title =
            $"{data.Name}{(options.Head == ClassificationHead.KindName ? "" : $" ({options.Head})")}: " +
                $"{(options.Protocol.Kind == ProtocolKind.Halves ? "the seed talk's protocol (halves)" : "MedMNIST's data fractions")}";
        var report = EvaluationReport.Write(options.Out, title, results, cells.Metrics, [.. inits.Select(i => i.Name)], options.Protocol.Fractions, settings);
        return new EvaluationOutcome(results, settings, report, trained);
    }

    /// <summary>Checks the initialisations and the task's words without loading anything (before a run is tracked).</summary>
    public static void Validate(EvaluationOptions options)
    {
        options.Protocol.Validate();
        options.FineTune.Validate();
        foreach (string init in options.Inits) Initialisation.Parse(init);
        string kind = HeadRegistry.ParseSpec(options.Head).Kind;
        if (!HeadRegistry.Kinds.Contains(kind))
            throw new ArgumentException($"--head '{options.Head}': the head kinds are {string.Join(", ", HeadRegistry.Kinds)}");
        if (kind != ImageToImageHead.Restoration && options.Inits.Contains("gaussian"))
            throw new ArgumentException($"--init gaussian: the Gaussian filter baseline is a restoration row, and --head is {kind}");
        if (options.Config is { } config) MedformerConfig.Resolve(config);
        Source(options.Task).Check("--task");
    }

    /// <summary>--task in <see cref="DataSource"/>'s grammar (phantom:2d, msd:FOLDER, npz:FILE,subset=NAME), as finetune takes it.</summary>
    public static DataSource Source(string task) => DataSource.Parse(task, argument: "--task");

    /// <summary>
    /// evaluate's older spelling, the kind and its argument as two words (phantom 2d, npz FILE): the one-argument
    /// form they stand for (phantom:2d, npz:FILE); null where <paramref name="words"/> is already one argument.
    /// </summary>
    public static string? FromWords(IReadOnlyList<string> words) => words.Count switch
    {
        1 => null,
        2 when !words[0].Contains(':') && DataSource.Kinds.Contains(words[0]) => $"{words[0]}:{words[1]}",
        _ => throw new ArgumentException($"--task '{string.Join(" ", words)}': one argument, {DataSource.Grammar}"),
    };

    public static EvaluationData OpenData(string task) => EvaluationData.Open(Source(task));
}
