using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, fills <paramref name="Holes"/> to <paramref name="MaxHoles"/>
/// boxes of the image with <paramref name="FillValue"/> (MONAI's <c>RandCoarseDropout</c>; Cutout, DeVries and Taylor,
/// 2017, as FixMatch's strong augmentation uses it). Each box's extent along each axis is uniform in
/// [<paramref name="SpatialSize"/>, <paramref name="MaxSpatialSize"/>] (one value for every axis or one per axis;
/// clipped to the image), its place uniform within the image. Touches the image only.
/// </summary>
public sealed record RandCoarseDropout(long Holes, long[] SpatialSize, double FillValue = 0, long? MaxHoles = null, long[]? MaxSpatialSize = null,
    double Probability = 0.1) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandCoarseDropout));
        long[] least = Spatial.PerAxis(SpatialSize, axes, nameof(RandCoarseDropout), nameof(SpatialSize));
        long[] most = Spatial.PerAxis(MaxSpatialSize ?? SpatialSize, axes, nameof(RandCoarseDropout), nameof(MaxSpatialSize));
        long maxHoles = MaxHoles ?? Holes;
        if (Holes < 1 || maxHoles < Holes)
            throw new ArgumentException($"RandCoarseDropout: holes {Holes} must be at least 1 and max holes {maxHoles} at least that");
        for (int a = 0; a < axes; a++)
            if (least[a] < 1 || most[a] < least[a])
                throw new ArgumentException($"RandCoarseDropout: box extents [{string.Join(",", least)}] must be at least 1 and the maxima " +
                    $"[{string.Join(",", most)}] at least those");
        if (!double.IsFinite(FillValue)) throw new ArgumentException($"RandCoarseDropout: fill value {FillValue} must be finite");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        long[] shape = Spatial.SpatialShape(sample);
        using var scope = NewDisposeScope();
        var image = sample.Image.clone();
        using var fill = FillValue.ToScalar();  // held explicitly: an implicit Scalar can be finalized while libtorch reads it
        long holes = rng.NextInt64(Holes, maxHoles + 1);
        for (long h = 0; h < holes; h++)
        {
            var box = image;
            for (int a = 0; a < axes; a++)
            {
                long extent = Math.Min(shape[a], rng.NextInt64(least[a], most[a] + 1));
                long start = rng.NextInt64(0, shape[a] - extent + 1);
                box = box.narrow(a + 1, start, extent);
            }
            box.fill_(fill);
        }
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
