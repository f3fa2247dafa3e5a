using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, a gamma curve over the image's own range (MONAI's
/// <c>RandAdjustContrast</c>): x ← ((x − min)/(range + ε))^γ · range + min, γ uniform in [MinGamma, MaxGamma],
/// ε = 1e-7. Touches the image only.
/// </summary>
public sealed record RandAdjustContrast(double Probability = 0.1, double MinGamma = 0.5, double MaxGamma = 4.5) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandAdjustContrast));
        if (!(MinGamma > 0 && MinGamma <= MaxGamma) || double.IsInfinity(MaxGamma))
            throw new ArgumentException($"RandAdjustContrast: needs 0 < MinGamma <= MaxGamma, got [{MinGamma}, {MaxGamma}]");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        double gamma = rng.Uniform(MinGamma, MaxGamma);
        using var scope = NewDisposeScope();
        var (min, max) = sample.Image.aminmax();
        var range = max - min;
        // An explicit Scalar held to the end: an implicit one can be finalized while libtorch still reads it (a loader
        // worker died of "Unknown scalar type" here after about a million calls).
        using var exponent = gamma.ToScalar();
        var image = ((sample.Image - min) / (range + 1e-7)).pow(exponent) * range + min;
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
