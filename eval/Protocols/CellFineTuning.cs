using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Eval.Protocols;

/// <summary>
/// What every fine-tuning cell does alike, whatever its head: the cell's model (seeded random init or its
/// checkpoint with the head's task bank), the fit on the cell's training draw with validation checks that keep the
/// best step, and the <see cref="CellResult"/> around the cell's test metrics.
/// </summary>
static class CellFineTuning
{
    /// <summary>
    /// The settings every fine-tuning protocol records (a rerun with other values is refused): the data, the
    /// fine-tuning recipe, the selection rule and the random initialisation's config, plus the trainer's own.
    /// </summary>
    public static Dictionary<string, string> Settings(string data, FineTuneSettings settings, string selection, MedformerConfig randomConfig,
        params (string Key, string Value)[] own)
    {
        var recorded = new Dictionary<string, string>
        {
            ["data"] = data,
            ["max_steps"] = settings.FineTune.MaxSteps.ToString(CultureInfo.InvariantCulture),
            ["lr"] = settings.FineTune.LearningRate.ToString("R", CultureInfo.InvariantCulture),
            ["batch_size"] = settings.FineTune.BatchSize.ToString(CultureInfo.InvariantCulture),
            ["evaluations"] = settings.Evaluations.ToString(CultureInfo.InvariantCulture),
            ["precision"] = settings.FineTune.Precision.ToString().ToLowerInvariant(),
            ["selection"] = selection,
            ["random_config"] = JsonSerializer.Serialize(randomConfig, new JsonSerializerOptions(MedformerConfig.Json) { WriteIndented = false }),
        };
        foreach (var (key, value) in own) recorded[key] = value;
        return recorded;
    }

    /// <summary>The validation samples a cell chooses on.</summary>
    public static SubsetCorpus Validation(CellPlan plan) =>
        new(plan.Validation, Array.ConvertAll(plan.ValidationIndices, i => (long)i), $"{plan.Validation.Name}/validation");

    /// <summary>The cell's model (seeded by the cell) with a head for it; the model is disposed if the head cannot be built.</summary>
    public static FineTuner Tuner(CellPlan plan, string bank, MedformerConfig randomConfig, Func<MedformerConfig, Head> head)
    {
        Seeding.SeedEverything(1000 + plan.Key.Seed);
        var model = plan.Init.Checkpoint is { } folder ? Pretrained.Load(folder, [bank]) : new MedformerModel(randomConfig);
        try
        {
            return new FineTuner(model, head(model.Config), Strategy.Full);
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Fits on the cell's training draw, checking <paramref name="selection"/> (a head metric, <paramref name="mode"/>
    /// "max" or "min") on validation <see cref="FineTuneSettings.Evaluations"/> times and keeping the best check's
    /// weights; then <paramref name="score"/> gives the test metrics of the tuner.
    /// </summary>
    public static CellResult Run(FineTuner tuner, EvaluationData data, CellPlan plan, FineTuneSettings settings, string selection, string mode,
        string reported, Device device, Action<TrainerLog>? progress, Func<IReadOnlyDictionary<string, double>> score, CancellationToken cancel)
    {
        var clock = Stopwatch.StartNew();
        var key = plan.Key;
        var train = new SubsetCorpus(data.Train, Array.ConvertAll(plan.TrainIndices, i => (long)i), $"{data.Train.Name}/labelled");
        var loss = new List<CurvePoint>();
        var fineTune = settings.FineTune;
        var result = tuner.Fit(train, fineTune with
        {
            BatchSize = Math.Min(fineTune.BatchSize, plan.TrainIndices.Length), Seed = key.Seed,
            LogEvery = (int)Math.Max(1, Math.Min(10, fineTune.MaxSteps / 10)), EvaluateEvery = Math.Max(1, fineTune.MaxSteps / settings.Evaluations),
            SelectBest = selection, SelectMode = mode, Device = device,
        }, Validation(plan), log: entry =>
        {
            loss.Add(new CurvePoint(entry.Step, entry.Loss));
            progress?.Invoke(entry);
        }, cancel: cancel);
        var checks = result.Training.Evaluations.Select(e => new CurvePoint(e.Step, e.Metrics[selection])).ToList();
        var metrics = score();
        long selected = result.SelectedStep ?? result.Training.Steps;
        double selectedValue = checks.FirstOrDefault(c => c.Step == selected)?.Value ?? double.NaN;
        return new CellResult(key.Init, key.Fraction, key.Seed, plan.TrainIndices.Length, metrics, reported, selected, selectedValue,
            clock.Elapsed.TotalSeconds, loss, checks);
    }
}
