using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// torchvision's <c>RandomResizedCrop</c> for 2D and 3D: a region covering a fraction of the image's area (volume)
/// drawn uniformly in [MinScale, MaxScale], with aspect ratios drawn log-uniformly in [MinRatio, MaxRatio], at a
/// uniform position, resized to <paramref name="Size"/> (one size for all axes or one per axis).
/// <para>
/// The ratio is the last axis over each other axis (2D: width/height, as torchvision); in 3D both W/D and W/H are
/// drawn, and the sides follow from the volume: W = (V·r₀·r₁)^(1/3), side_a = W/r_a. Ten tries for a region that
/// fits, then torchvision's fallback (the whole image, its ratios clamped to the range, centred). The meta's spacing
/// becomes the region's spacing at the output size.
/// </para>
/// </summary>
public sealed record RandResizedCrop(long[] Size, double MinScale = 0.08, double MaxScale = 1.0, double MinRatio = 3.0 / 4.0, double MaxRatio = 4.0 / 3.0,
    Interpolation Mode = Interpolation.Linear) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandResizedCrop));
        long[] size = Spatial.PerAxis(Size, axes, nameof(RandResizedCrop), nameof(Size));
        if (size.Any(n => n < 1))
            throw new ArgumentException($"RandResizedCrop: Size [{string.Join(", ", Size)}] must be positive");
        if (!(MinScale > 0 && MinScale <= MaxScale) || !(MinRatio > 0 && MinRatio <= MaxRatio) || double.IsInfinity(MaxScale) || double.IsInfinity(MaxRatio))
            throw new ArgumentException($"RandResizedCrop: needs 0 < MinScale <= MaxScale and 0 < MinRatio <= MaxRatio, got scale [{MinScale}, " +
                $"{MaxScale}], ratio [{MinRatio}, {MaxRatio}]");
        long[] shape = Spatial.SpatialShape(sample);
        var (start, length) = Region(shape, rng);
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.CropResize(sample, start, length, size, Mode, Resize.Rescaled(sample.Meta, length, size)));
    }

    internal (long[] Start, long[] Length) Region(long[] shape, Random rng)
    {
        int axes = shape.Length;
        double volume = shape.Aggregate(1.0, (v, n) => v * n);
        double logMin = Math.Log(MinRatio), logMax = Math.Log(MaxRatio);
        var length = new long[axes];
        var start = new long[axes];
        var ratios = new double[axes - 1];
        for (int attempt = 0; attempt < 10; attempt++)
        {
            double target = volume * rng.Uniform(MinScale, MaxScale);
            for (int a = 0; a < axes - 1; a++) ratios[a] = Math.Exp(rng.Uniform(logMin, logMax));
            double last = Math.Pow(target * ratios.Aggregate(1.0, (p, r) => p * r), 1.0 / axes);
            bool fits = true;
            for (int a = 0; a < axes; a++)
            {
                double side = a == axes - 1 ? last : last / ratios[a];
                length[a] = (long)Math.Round(side, MidpointRounding.ToEven);
                fits &= length[a] > 0 && length[a] <= shape[a];
            }
            if (!fits) continue;
            for (int a = 0; a < axes; a++) start[a] = rng.NextInt64(0, shape[a] - length[a] + 1);
            return (start, length);
        }
        // Fallback: the whole image, cut down along whichever axes break the ratio range, centred.
        length = (long[])shape.Clone();
        for (int a = 0; a < axes - 1; a++)
        {
            double ratio = (double)shape[axes - 1] / shape[a];
            if (ratio < MinRatio) length[a] = Math.Max(1, (long)Math.Round(shape[axes - 1] / MinRatio, MidpointRounding.ToEven));
        }
        for (int a = 0; a < axes - 1; a++)
        {
            double ratio = (double)shape[axes - 1] / length[a];
            if (ratio > MaxRatio)
                length[axes - 1] = Math.Min(length[axes - 1], Math.Max(1, (long)Math.Round(length[a] * MaxRatio, MidpointRounding.ToEven)));
        }
        for (int a = 0; a < axes; a++) start[a] = (shape[a] - length[a]) / 2;
        return (start, length);
    }
}
