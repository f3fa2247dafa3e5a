using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, multiplies the image by 1 + f, f uniform in ±<paramref name="Factors"/>
/// (MONAI's <c>RandScaleIntensity</c>). Touches the image only.
/// </summary>
public sealed record RandScaleIntensity(double Factors, double Probability = 0.1) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandScaleIntensity));
        if (!(Factors >= 0) || double.IsInfinity(Factors))
            throw new ArgumentException($"RandScaleIntensity: Factors must be finite and non-negative, got {Factors}");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        double factor = 1 + rng.Uniform(-Factors, Factors);
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Intensity.WithImage(sample, sample.Image * factor));
    }
}
