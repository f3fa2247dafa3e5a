using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, adds an offset uniform in ±<paramref name="Offsets"/> to the image
/// (MONAI's <c>RandShiftIntensity</c>). Touches the image only.
/// </summary>
public sealed record RandShiftIntensity(double Offsets, double Probability = 0.1) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandShiftIntensity));
        if (!(Offsets >= 0) || double.IsInfinity(Offsets))
            throw new ArgumentException($"RandShiftIntensity: Offsets must be finite and non-negative, got {Offsets}");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        double offset = rng.Uniform(-Offsets, Offsets);
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Intensity.WithImage(sample, sample.Image + offset));
    }
}
