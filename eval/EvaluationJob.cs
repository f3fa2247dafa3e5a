using Medformer.Datasets.Corpora;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Medformer.Pretrain.Training;
using Medformer.Runtime;

namespace Medformer.Eval;

/// <summary>What <c>medformer evaluate</c> runs: a protocol on a data set for a list of initialisations.</summary>
/// <param name="Task">"phantom" (optionally "phantom 3d"), "medmnist NAME", "npz FILE" or "mnist FOLDER", split in words.</param>
/// <param name="Inits">"random", model folders, or NAME=FOLDER.</param>
/// <param name="Config">The random initialisation's model: a preset or config.json (default: the first checkpoint's, else tiny).</param>
public sealed record EvaluationOptions(
    ProtocolSpec Protocol,
    IReadOnlyList<string> Task,
    IReadOnlyList<string> Inits,
    string Out,
    FineTuneSettings FineTune,
    string? Config = null,
    string Device = "cpu");

/// <summary>What a run left: every requested cell's result, the settings they were made with, and the report's files.</summary>
public sealed record EvaluationOutcome(IReadOnlyList<CellResult> Results, IReadOnlyDictionary<string, string> Settings, ReportFiles Report, int Trained);

/// <summary>
/// The evaluation job: opens the data, runs the protocol's cells through classification fine-tuning (resuming from
/// the results already in <see cref="EvaluationOptions.Out"/>), and writes the report there.
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
        var device = DeviceSpec.Parse(options.Device);
        using var data = OpenData(options.Task);
        using var cells = new ClassificationCells(data, options.FineTune, randomConfig, device, progress);
        var settings = ProtocolRunner.Settings(options.Protocol, cells);
        var store = new ResultStore(options.Out, settings);
        int trained = 0;
        var results = ProtocolRunner.Run(options.Protocol, data, inits, cells, store, log, result =>
        {
            trained++;
            finished?.Invoke(result);
        }, cancel);
        string title = $"{data.Name}: {(options.Protocol.Kind == ProtocolKind.Halves ? "the seed talk's protocol (halves)" : "MedMNIST's data fractions")}";
        var report = EvaluationReport.Write(options.Out, title, results, cells.Metrics, [.. inits.Select(i => i.Name)], options.Protocol.Fractions, settings);
        return new EvaluationOutcome(results, settings, report, trained);
    }

    /// <summary>Checks the initialisations and the task's words without loading anything (before a run is tracked).</summary>
    public static void Validate(EvaluationOptions options)
    {
        options.Protocol.Validate();
        options.FineTune.Validate();
        foreach (string init in options.Inits) Initialisation.Parse(init);
        if (options.Config is { } config) MedformerConfig.Resolve(config);
        var task = options.Task;
        bool known = task.Count switch
        {
            1 => task[0] == "phantom",
            2 => task[0] is "phantom" or "medmnist" or "npz" or "mnist",
            _ => false,
        };
        if (!known) throw new ArgumentException($"--task '{string.Join(" ", task)}': {ExpectedTask}");
    }

    const string ExpectedTask = "expected phantom [2d|3d], medmnist NAME, npz FILE or mnist FOLDER";

    /// <summary>The data a task names; an <see cref="ArgumentException"/> says what --task takes.</summary>
    public static EvaluationData OpenData(IReadOnlyList<string> task)
    {
        const string Expected = ExpectedTask;
        if (task.Count == 0) throw new ArgumentException($"--task: {Expected}");
        string? argument = task.Count > 1 ? task[1] : null;
        if (task.Count > 2) throw new ArgumentException($"--task '{string.Join(" ", task)}': {Expected}");
        return task[0] switch
        {
            "phantom" => EvaluationData.Phantom(PhantomSpec.Default(argument ?? "2d")),
            "medmnist" when argument is not null => EvaluationData.MedMnist(argument),
            "npz" when argument is not null => EvaluationData.Npz(argument),
            "mnist" when argument is not null => EvaluationData.Mnist(argument),
            _ => throw new ArgumentException($"--task '{string.Join(" ", task)}': {Expected}"),
        };
    }
}
