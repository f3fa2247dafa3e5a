using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Maps intensities [AMin, AMax] linearly onto [BMin, BMax] (MONAI's <c>ScaleIntensityRange</c>), optionally clipping
/// to [BMin, BMax]: CT windowing in Hounsfield units. <see cref="Window"/> builds one from a window centre and width.
/// Touches the image only.
/// </summary>
public sealed record ScaleIntensityRange(double AMin, double AMax, double BMin = 0, double BMax = 1, bool Clip = false) : ITransform
{
    /// <summary>A CT window, e.g. (40, 400) for soft tissue: centre ± width/2 → [BMin, BMax], clipped.</summary>
    public static ScaleIntensityRange Window(double center, double width, double bMin = 0, double bMax = 1)
    {
        if (!(width > 0) || double.IsInfinity(width) || !double.IsFinite(center))
            throw new ArgumentException($"ScaleIntensityRange.Window: the width must be positive and finite and the centre " +
                $"finite, got centre {center}, width {width}");
        return new ScaleIntensityRange(center - width / 2, center + width / 2, bMin, bMax, Clip: true);
    }

    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(ScaleIntensityRange));
        if (!double.IsFinite(AMin) || !double.IsFinite(AMax) || AMin == AMax || !double.IsFinite(BMin) || !double.IsFinite(BMax))
            throw new ArgumentException($"ScaleIntensityRange: needs finite AMin != AMax and finite BMin, BMax; got [{AMin}, {AMax}] → [{BMin}, {BMax}]");
        using var scope = NewDisposeScope();
        double scale = (BMax - BMin) / (AMax - AMin);
        var image = sample.Image * scale + (BMin - AMin * scale);
        if (Clip) image = image.clamp(Math.Min(BMin, BMax), Math.Max(BMin, BMax));
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
