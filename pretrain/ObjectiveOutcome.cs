using Medformer.Training;

namespace Medformer.Pretrain;

/// <summary>
/// How one objective of a run ended: its loss over the last tenth of the logged steps against its chance loss (the
/// loss of a model that learned nothing, measured on the run's first batch; null where the objective has none).
/// </summary>
public sealed record ObjectiveOutcome(string Name, double FinalLoss, double? ChanceLoss)
{
    /// <summary>Within 2% of chance: the objective learned nothing from this data.</summary>
    public bool AtChance => ChanceLoss is { } chance && FinalLoss >= 0.98 * chance;

    /// <summary>One outcome per objective in the log, in the log's order; empty when nothing was logged.</summary>
    public static IReadOnlyList<ObjectiveOutcome> Of(IReadOnlyList<TrainerLog> history, IReadOnlyDictionary<string, double> chance)
    {
        if (history.Count == 0) return [];
        long last = history[^1].Step, from = last - Math.Max(1, last / 10);
        var tail = history.Where(l => l.Step > from).ToList();
        return [.. history[^1].Parts.Keys.Select(name => new ObjectiveOutcome(name,
            tail.Where(l => l.Parts.ContainsKey(name)).Average(l => l.Parts[name]), chance.TryGetValue(name, out double c) ? c : null))];
    }
}
