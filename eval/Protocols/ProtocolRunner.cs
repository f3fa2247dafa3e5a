using System.Globalization;

namespace Medformer.Eval.Protocols;

/// <summary>
/// Runs a protocol: every (initialisation, fraction, seed) cell through the task's <see cref="ICellTrainer"/>,
/// skipping the cells the <see cref="ResultStore"/> already holds and storing each as it finishes, so a run that was
/// interrupted continues where it stopped.
/// </summary>
public static class ProtocolRunner
{
    /// <summary>What the store must agree on for a rerun: the protocol's kind and the trainer's settings.</summary>
    public static IReadOnlyDictionary<string, string> Settings(ProtocolSpec spec, ICellTrainer trainer)
    {
        var settings = trainer.Settings.ToDictionary();
        settings["protocol"] = spec.Name;
        return settings;
    }

    /// <param name="log">A line per cell started, skipped or finished.</param>
    /// <param name="finished">Each newly finished cell (for tracking).</param>
    /// <returns>The results of the requested cells, in the protocol's order.</returns>
    public static IReadOnlyList<CellResult> Run(ProtocolSpec spec, EvaluationData data, IReadOnlyList<Initialisation> inits, ICellTrainer trainer,
        ResultStore store, Action<string>? log = null, Action<CellResult>? finished = null, CancellationToken cancel = default)
    {
        spec.Validate();
        if (inits.Count == 0) throw new ArgumentException("a protocol needs at least one initialisation (--init random, --init MODEL)");
        if (inits.Select(i => i.Name).Distinct().Count() != inits.Count)
            throw new ArgumentException($"initialisations share a name ({string.Join(", ", inits.Select(i => i.Name))}); name them NAME=FOLDER");
        var byName = inits.ToDictionary(i => i.Name);
        var cells = spec.Cells(inits).ToList();
        var results = new List<CellResult>();
        int done = 0;
        foreach (var key in cells)
        {
            cancel.ThrowIfCancellationRequested();
            string where = $"[{++done}/{cells.Count}] {key.Init}, {Percent(key.Fraction)} of the labels, seed {key.Seed}";
            if (store.TryGet(key, out var kept))
            {
                log?.Invoke($"{where}: kept from {store.CellsPath}");
                results.Add(kept);
                continue;
            }
            var plan = spec.Plan(data, byName[key.Init], key);
            log?.Invoke($"{where}: training on {plan.TrainIndices.Length} samples, choosing on {plan.ValidationIndices.Length}");
            var result = trainer.Train(plan, cancel);
            store.Add(result);
            log?.Invoke($"{where}: {string.Join(", ", result.Metrics.Select(m => $"{m.Key} {m.Value.ToString("F4", CultureInfo.InvariantCulture)}"))} (step " +
                $"{result.SelectedStep} chosen by validation {result.SelectionMetric} " +
                    $"{result.SelectedValue.ToString("F4", CultureInfo.InvariantCulture)}; {result.Seconds:F0} s)");
            finished?.Invoke(result);
            results.Add(result);
        }
        return results;
    }

    /// <summary>0.01 → "1%", 0.2 → "20%", 0.005 → "0.5%".</summary>
    public static string Percent(double fraction) => (fraction * 100).ToString("0.###", CultureInfo.InvariantCulture) + "%";
}
