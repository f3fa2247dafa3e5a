using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Resamples the whole image to <paramref name="SpatialSize"/> (≤ 0 keeps an axis), MONAI's <c>Resize</c>: the image's
/// outer edges stay where they are (align_corners=False), masks go nearest. The meta's Spacing grows by n_in/n_out.
/// </summary>
public sealed record Resize(long[] SpatialSize, Interpolation Mode = Interpolation.Linear) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Resize));
        long[] shape = Spatial.SpatialShape(sample);
        long[] size = Spatial.PerAxis(SpatialSize, axes, nameof(Resize), nameof(SpatialSize)).Select((n, a) => n > 0 ? n : shape[a]).ToArray();
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.CropResize(sample, new long[axes], shape, size, Mode, Rescaled(sample.Meta, shape, size)));
    }

    /// <summary>The meta with its spacing scaled for a region of <paramref name="length"/> pixels now shown in <paramref name="size"/>.</summary>
    internal static SampleMeta Rescaled(SampleMeta meta, long[] length, long[] size)
    {
        if (meta.Spacing.Length != length.Length) return meta;
        return meta with { Spacing = meta.Spacing.Select((s, a) => s * length[a] / size[a]).ToArray() };
    }
}
