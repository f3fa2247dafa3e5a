using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Crops a region of <paramref name="RoiSize"/> (MONAI's <c>RandSpatialCrop</c>): at a uniformly drawn position, or at
/// the centre unless <paramref name="RandomCenter"/>; with <paramref name="RandomSize"/>, each side is drawn in
/// [RoiSize, MaxRoiSize] (MaxRoiSize defaults to the image). Sizes clip to the image; ≤ 0 keeps an axis whole.
/// </summary>
public sealed record RandSpatialCrop(long[] RoiSize, long[]? MaxRoiSize = null, bool RandomCenter = true, bool RandomSize = false) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandSpatialCrop));
        long[] shape = Spatial.SpatialShape(sample);
        long[] roi = Spatial.PerAxis(RoiSize, axes, nameof(RandSpatialCrop), nameof(RoiSize));
        long[]? max = MaxRoiSize is null ? null : Spatial.PerAxis(MaxRoiSize, axes, nameof(RandSpatialCrop), nameof(MaxRoiSize));
        var size = new long[axes];
        var start = new long[axes];
        for (int a = 0; a < axes; a++)
        {
            long low = roi[a] > 0 ? Math.Min(roi[a], shape[a]) : shape[a];
            long high = max is not null && max[a] > 0 ? Math.Min(max[a], shape[a]) : shape[a];
            size[a] = RandomSize && high > low ? rng.NextInt64(low, high + 1) : low;
        }
        for (int a = 0; a < axes; a++)
            start[a] = RandomCenter ? rng.NextInt64(0, shape[a] - size[a] + 1) : shape[a] / 2 - size[a] / 2;
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Crop(sample, start, size));
    }
}
