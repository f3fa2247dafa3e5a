using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Maps the image's <paramref name="Lower"/>-th and <paramref name="Upper"/>-th percentiles onto [BMin, BMax]
/// (MONAI's <c>ScaleIntensityRangePercentiles</c>), over the whole image or per channel, optionally clipped. A flat
/// image (both percentiles equal) maps to BMin. Touches the image only.
/// </summary>
public sealed record ScaleIntensityRangePercentiles(double Lower, double Upper, double BMin = 0, double BMax = 1, bool Clip = false, bool ChannelWise = false) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(ScaleIntensityRangePercentiles));
        if (!(Lower >= 0 && Lower <= Upper && Upper <= 100) || !double.IsFinite(BMin) || !double.IsFinite(BMax))
            throw new ArgumentException($"ScaleIntensityRangePercentiles: needs 0 <= Lower <= Upper <= 100 and finite BMin, BMax; got {Lower}, {Upper}, [{BMin}, {BMax}]");
        using var scope = NewDisposeScope();
        long channels = sample.Image.shape[0];
        var rows = ChannelWise ? sample.Image.reshape(channels, -1) : sample.Image.reshape(1, -1);
        var broadcast = ChannelWise ? new long[] { channels }.Concat(Enumerable.Repeat(1L, (int)sample.Image.dim() - 1)).ToArray() : [1];
        var low = Intensity.Percentile(rows, Lower).view(broadcast);
        var high = Intensity.Percentile(rows, Upper).view(broadcast);
        var range = high - low;
        var scale = where(range > 0, (BMax - BMin) / range, zeros_like(range));
        var image = (sample.Image - low) * scale + BMin;
        if (Clip) image = image.clamp(Math.Min(BMin, BMax), Math.Max(BMin, BMax));
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
