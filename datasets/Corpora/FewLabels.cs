using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// The labelled subset of a few-label experiment: from one seeded order of all samples, the first samples of each
/// class, either round(fraction · class size) (at least 1; half away from zero) or a fixed count per class. Drawn
/// from one order, the draws of one seed nest: 1% ⊂ 10% ⊂ 100%, and 10 per class ⊂ 20 per class, so a
/// data-fraction curve adds labels rather than swapping them. The order depends on the seed alone (not on the
/// process's global seed). Indices come back ascending.
/// </summary>
public static class FewLabels
{
    /// <summary>round(fraction · size) of each class (at least one), 0 &lt; fraction ≤ 1.</summary>
    public static int[] Fraction(IReadOnlyList<long> classes, double fraction, long seed)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentException($"fraction {fraction} must be in (0, 1]");
        return Draw(classes, seed, size => Math.Max(1, (int)Math.Round(size * fraction, MidpointRounding.AwayFromZero)));
    }

    /// <summary><paramref name="count"/> of each class (all of a smaller class).</summary>
    public static int[] PerClass(IReadOnlyList<long> classes, int count, long seed)
    {
        if (count < 1) throw new ArgumentException($"{count} per class: must be at least 1");
        return Draw(classes, seed, size => Math.Min(size, count));
    }

    /// <summary>A stratified split: <see cref="Fraction"/>'s draw and the rest (the seed talk's halves: fraction 0.5).</summary>
    public static (int[] Picked, int[] Others) Split(IReadOnlyList<long> classes, double fraction, long seed)
    {
        var picked = Fraction(classes, fraction, seed);
        var taken = new HashSet<int>(picked);
        return (picked, [.. Enumerable.Range(0, classes.Count).Where(i => !taken.Contains(i))]);
    }

    static int[] Draw(IReadOnlyList<long> classes, long seed, Func<int, int> take)
    {
        if (classes.Count == 0) throw new ArgumentException("no samples to draw from");
        var order = Enumerable.Range(0, classes.Count).ToArray();
        new Random((int)(Seeding.Derive(seed, "few-labels", 0) & int.MaxValue)).Shuffle(order);
        return [.. order.GroupBy(i => classes[i]).SelectMany(g => g.Take(take(g.Count()))).Order()];
    }
}
