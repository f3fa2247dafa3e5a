using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Maps the image's <paramref name="Lower"/>-th and <paramref name="Upper"/>-th percentiles onto [BMin, BMax]
/// (MONAI's <c>ScaleIntensityRangePercentiles</c>; percentiles interpolate linearly, as numpy's), over the whole image
/// or per channel, optionally clipped. With <paramref name="Nonzero"/>, the percentiles come from the nonzero voxels
/// and only they change (zero background stays 0), as <see cref="NormalizeIntensity"/> does. A flat image (both
/// percentiles equal) maps to BMin. Touches the image only.
/// </summary>
public sealed record ScaleIntensityRangePercentiles(double Lower, double Upper, double BMin = 0, double BMax = 1, bool Clip = false, bool ChannelWise = false,
    bool Nonzero = false) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(ScaleIntensityRangePercentiles));
        if (!(Lower >= 0 && Lower <= Upper && Upper <= 100) || !double.IsFinite(BMin) || !double.IsFinite(BMax))
            throw new ArgumentException($"ScaleIntensityRangePercentiles: needs 0 <= Lower <= Upper <= 100 and finite BMin, BMax; " +
                $"got {Lower}, {Upper}, [{BMin}, {BMax}]");
        using var scope = NewDisposeScope();
        long channels = sample.Image.size(0);
        var rows = ChannelWise ? sample.Image.reshape(channels, -1) : sample.Image.reshape(1, -1);
        var broadcast = new long[sample.Image.dim()];
        Array.Fill(broadcast, 1L);
        if (ChannelWise) broadcast[0] = channels;
        Tensor low, high;
        if (Nonzero)
        {
            // Rows keep different counts of nonzero voxels: one row at a time (one, or one per channel).
            var lows = new Tensor[rows.size(0)];
            var highs = new Tensor[rows.size(0)];
            for (long r = 0; r < rows.size(0); r++)
            {
                var values = rows[r].masked_select(rows[r].ne(0)).unsqueeze(0);
                bool empty = values.size(1) == 0;
                lows[r] = empty ? zeros(1) : Intensity.Percentile(values, Lower);
                highs[r] = empty ? zeros(1) : Intensity.Percentile(values, Upper);
            }
            low = cat(lows).view(broadcast);
            high = cat(highs).view(broadcast);
        }
        else
        {
            low = Intensity.Percentile(rows, Lower).view(broadcast);
            high = Intensity.Percentile(rows, Upper).view(broadcast);
        }
        var range = high - low;
        var scale = where(range > 0, (BMax - BMin) / range, zeros_like(range));
        var image = (sample.Image - low) * scale + BMin;
        if (Clip) image = image.clamp(Math.Min(BMin, BMax), Math.Max(BMin, BMax));
        if (Nonzero) image = where(sample.Image.ne(0), image, sample.Image);
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
