using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Resamples to the spacing <paramref name="PixDim"/> (mm per pixel, slowest axis first; one value for all axes or
/// one per axis; ≤ 0 keeps an axis), MONAI's <c>Spacing</c>, by <c>interpolate</c> (bilinear/trilinear; masks nearest).
/// The field of view is kept: an axis of n pixels at spacing s becomes round(n·s/PixDim) pixels (at least 1) with the
/// volume's outer edges fixed, so the spacing reached is n·s/n_out, exactly PixDim when that divides; the returned
/// meta carries the spacing reached. Needs the meta's Spacing for every spatial axis.
/// </summary>
public sealed record Spacing(double[] PixDim, Interpolation Mode = Interpolation.Linear) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Spacing));
        double[] target = Spatial.PerAxis(PixDim, axes, nameof(Spacing), nameof(PixDim));
        double[] spacing = sample.Meta.Spacing;
        if (spacing.Length != axes || spacing.Any(s => !(s > 0) || double.IsInfinity(s)))
            throw new ArgumentException($"Spacing: {sample.Meta}: the meta's spacing [{string.Join(", ", spacing)}] does " +
                $"not give {axes} positive finite values");
        if (target.Any(double.IsNaN))
            throw new ArgumentException($"Spacing: PixDim [{string.Join(", ", PixDim)}] holds NaN");
        long[] shape = Spatial.SpatialShape(sample);
        var size = new long[axes];
        for (int a = 0; a < axes; a++)
        {
            double extent = shape[a] * spacing[a];
            double pixels = target[a] > 0 ? Math.Round(extent / target[a], MidpointRounding.AwayFromZero) : shape[a];
            if (pixels > 1 << 20)
                throw new ArgumentException($"Spacing: {sample.Meta}: resampling axis {a} from {spacing[a]} to {target[a]} mm would give {pixels} pixels");
            size[a] = Math.Max(1, (long)pixels);
        }
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.CropResize(sample, new long[axes], shape, size, Mode, Resize.Rescaled(sample.Meta, shape, size)));
    }
}
