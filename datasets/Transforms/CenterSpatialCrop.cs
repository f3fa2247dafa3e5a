using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Crops the centre <paramref name="RoiSize"/> (one size for all axes or one per axis; ≤ 0 keeps that axis; larger
/// than the image keeps it whole), MONAI's <c>CenterSpatialCrop</c>: the crop starts at ⌊n/2⌋ − ⌊roi/2⌋.
/// </summary>
public sealed record CenterSpatialCrop(long[] RoiSize) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(CenterSpatialCrop));
        var (start, size) = Region(Spatial.SpatialShape(sample), Spatial.PerAxis(RoiSize, axes, nameof(CenterSpatialCrop), nameof(RoiSize)));
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Crop(sample, start, size));
    }

    internal static (long[] Start, long[] Size) Region(long[] shape, long[] roi)
    {
        var start = new long[shape.Length];
        var size = new long[shape.Length];
        for (int a = 0; a < shape.Length; a++)
        {
            size[a] = roi[a] > 0 ? Math.Min(roi[a], shape[a]) : shape[a];
            start[a] = shape[a] / 2 - size[a] / 2;
        }
        return (start, size);
    }
}
