using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Brings each spatial axis to exactly <paramref name="SpatialSize"/> (≤ 0 keeps an axis): a centre crop where the
/// image is larger, then constant padding where it is smaller (MONAI's <c>ResizeWithPadOrCrop</c>). No resampling.
/// </summary>
public sealed record ResizeWithPadOrCrop(long[] SpatialSize, PadMethod Method = PadMethod.Symmetric, double Value = 0) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(ResizeWithPadOrCrop));
        long[] size = Spatial.PerAxis(SpatialSize, axes, nameof(ResizeWithPadOrCrop), nameof(SpatialSize));
        using var scope = NewDisposeScope();
        var (start, cropSize) = CenterSpatialCrop.Region(Spatial.SpatialShape(sample), size);
        var cropped = Spatial.Crop(sample, start, cropSize);
        var (before, after) = SpatialPad.Amounts(cropSize, size, Method);
        return Spatial.Keep(scope, Spatial.Pad(cropped, before, after, Value));
    }
}
