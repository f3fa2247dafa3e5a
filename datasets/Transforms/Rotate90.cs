using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Rotates by <paramref name="K"/> quarter turns in the plane of two spatial axes, from the first towards the second
/// (<c>torch.rot90</c>; MONAI's <c>Rotate90</c>), default the plane (H, W) of the last two axes. The meta's spacing
/// swaps along with the axes on odd turns.
/// </summary>
public sealed record Rotate90(int K = 1, int[]? SpatialAxes = null) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Rotate90));
        var plane = SpatialAxes ?? [axes - 2, axes - 1];
        if (plane.Length != 2 || plane[0] == plane[1] || plane.Any(a => a < 0 || a >= axes))
            throw new ArgumentException($"Rotate90: SpatialAxes [{string.Join(", ", plane)}] must be two distinct spatial axes in 0..{axes - 1}");
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Turn(sample, K, plane[0], plane[1]));
    }

    internal static Sample Turn(Sample sample, int k, int first, int second)
    {
        k = ((k % 4) + 4) % 4;
        if (k == 0) return Spatial.Passthrough(sample);
        var meta = sample.Meta;
        if (k % 2 == 1 && meta.Spacing.Length == sample.Image.dim() - 1)
        {
            var spacing = (double[])meta.Spacing.Clone();
            (spacing[first], spacing[second]) = (spacing[second], spacing[first]);
            meta = meta with { Spacing = spacing };
        }
        return Spatial.Map(sample, t => t.rot90(k, (first + 1, second + 1)), meta);
    }
}
