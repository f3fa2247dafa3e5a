namespace Medformer.Datasets.Transforms;

/// <summary>
/// One transform of several, drawn per sample (MONAI's <c>OneOf</c>); <paramref name="Weights"/> (relative, not
/// necessarily summing to 1) default to equal.
/// </summary>
public sealed record OneOf(IReadOnlyList<ITransform> Transforms, double[]? Weights = null) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        if (Transforms.Count == 0) throw new ArgumentException("OneOf: no transforms to choose from");
        if (Weights is { } w && (w.Length != Transforms.Count || w.Any(x => !(x >= 0) || double.IsInfinity(x)) || w.Sum() <= 0))
            throw new ArgumentException($"OneOf: Weights need {Transforms.Count} finite non-negative values with a positive sum");
        double total = Weights?.Sum() ?? Transforms.Count;
        double draw = rng.NextDouble() * total;
        for (int i = 0; i < Transforms.Count; i++)
        {
            draw -= Weights?[i] ?? 1.0;
            if (draw < 0) return Transforms[i].Apply(sample, rng);
        }
        // Rounding left the draw at the total: the last transform with weight.
        int last = Weights is null ? Transforms.Count - 1 : Array.FindLastIndex(Weights, x => x > 0);
        return Transforms[last].Apply(sample, rng);
    }
}
