using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Pads each spatial axis up to <paramref name="SpatialSize"/> (one size for all axes or one per axis; ≤ 0 keeps that
/// axis) with the constant <paramref name="Value"/> (MONAI's <c>SpatialPad</c>); an axis already as large is left
/// alone. Symmetric puts ⌊d/2⌋ before and the rest after. Masks pad with 0; coordinates extend beyond the image.
/// </summary>
public sealed record SpatialPad(long[] SpatialSize, PadMethod Method = PadMethod.Symmetric, double Value = 0) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(SpatialPad));
        var (before, after) = Amounts(Spatial.SpatialShape(sample), Spatial.PerAxis(SpatialSize, axes, nameof(SpatialPad), nameof(SpatialSize)), Method);
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Pad(sample, before, after, Value));
    }

    internal static (long[] Before, long[] After) Amounts(long[] shape, long[] size, PadMethod method)
    {
        var before = new long[shape.Length];
        var after = new long[shape.Length];
        for (int a = 0; a < shape.Length; a++)
        {
            long missing = size[a] > 0 ? Math.Max(size[a] - shape[a], 0) : 0;
            before[a] = method == PadMethod.Symmetric ? missing / 2 : 0;
            after[a] = missing - before[a];
        }
        return (before, after);
    }
}
