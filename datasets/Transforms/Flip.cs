using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Reverses the listed spatial axes (0 = slowest; null = all), MONAI's <c>Flip</c>: image, target and coordinates alike.
/// </summary>
public sealed record Flip(int[]? Axes = null) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Flip));
        var dims = Dims(Axes, axes, nameof(Flip));
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Map(sample, t => t.flip(dims)));
    }

    internal static long[] Dims(int[]? spatialAxes, int axes, string transform)
    {
        if (spatialAxes is null) return Enumerable.Range(1, axes).Select(d => (long)d).ToArray();
        if (spatialAxes.Length == 0 || spatialAxes.Any(a => a < 0 || a >= axes) || spatialAxes.Distinct().Count() != spatialAxes.Length)
            throw new ArgumentException($"{transform}: Axes [{string.Join(", ", spatialAxes)}] must be distinct spatial axes in 0..{axes - 1}");
        return spatialAxes.Select(a => (long)a + 1).ToArray();
    }
}
