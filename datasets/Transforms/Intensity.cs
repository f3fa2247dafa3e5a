using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>Shared by the intensity transforms: a new image, the rest of the sample passed through.</summary>
internal static class Intensity
{
    public static Sample WithImage(Sample sample, Tensor image) =>
        new(image, sample.Meta, sample.Target?.alias(), sample.Coordinates?.alias());

    /// <summary>
    /// The <paramref name="percent"/>-th percentile of each row of [R, N] (linear interpolation between order
    /// statistics, as numpy's default), by two k-th value selections: no size limit, unlike <c>quantile</c>.
    /// </summary>
    public static Tensor Percentile(Tensor rows, double percent)
    {
        long n = rows.size(1);
        double position = percent / 100.0 * (n - 1);
        long low = (long)Math.Floor(position);
        long high = Math.Min(low + 1, n - 1);
        var lower = rows.kthvalue(low + 1, 1).values;
        double fraction = position - low;
        if (fraction == 0 || high == low) return lower;
        var upper = rows.kthvalue(high + 1, 1).values;
        return lower + (upper - lower) * fraction;
    }
}
