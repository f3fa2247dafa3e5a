namespace Medformer.Eval.Protocols;

/// <summary>A point of a curve: a training step and a value (the training loss, or a validation metric).</summary>
public sealed record CurvePoint(long Step, double Value);

/// <summary>
/// What one run of a protocol gives: its cell, the test metrics of the step chosen on validation, that step and its
/// validation value, how many labelled samples it trained on, its wall time, and its curves (training loss at each
/// log line, the selection metric on validation at each evaluation).
/// </summary>
public sealed record CellResult(
    string Init,
    double Fraction,
    int Seed,
    long TrainCount,
    IReadOnlyDictionary<string, double> Metrics,
    string SelectionMetric,
    long SelectedStep,
    double SelectedValue,
    double Seconds,
    IReadOnlyList<CurvePoint> Loss,
    IReadOnlyList<CurvePoint> Validation)
{
    public CellKey Key => new(Init, Fraction, Seed);
}

/// <summary>
/// Trains and scores one cell of a protocol: the part that differs between tasks (classification now;
/// segmentation and restoration plug in the same way). It trains on <see cref="CellPlan.TrainIndices"/> of the
/// data's training corpus, keeps the weights of the step whose validation metric is best, and scores them on the
/// test corpus.
/// </summary>
public interface ICellTrainer
{
    /// <summary>The test metrics it reports, by name (the report's tables), the first one the headline.</summary>
    IReadOnlyList<MetricInfo> Metrics { get; }

    /// <summary>What fixes its results besides the cell (steps, learning rate, model config …): a rerun into the same
    /// results must have the same settings.</summary>
    IReadOnlyDictionary<string, string> Settings { get; }

    CellResult Train(CellPlan plan, CancellationToken cancel = default);
}

/// <summary>A metric as the report shows it: name, title, the factor for display (100 for percent), whether higher is better, decimal places.</summary>
public sealed record MetricInfo(string Name, string Title, double Scale = 100, bool HigherIsBetter = true, int Decimals = 1);
