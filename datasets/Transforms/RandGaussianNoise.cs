using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, adds Gaussian noise N(Mean, σ²) to the image (MONAI's
/// <c>RandGaussianNoise</c>), σ uniform in [0, Std] when <paramref name="SampleStd"/> (MONAI's default), else Std. The
/// noise comes from a libtorch generator seeded from the rng. Touches the image only.
/// </summary>
public sealed record RandGaussianNoise(double Probability = 0.1, double Mean = 0, double Std = 0.1, bool SampleStd = true) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandGaussianNoise));
        if (!(Std >= 0) || double.IsInfinity(Std) || !double.IsFinite(Mean))
            throw new ArgumentException($"RandGaussianNoise: needs a finite Mean and a finite non-negative Std, got {Mean}, {Std}");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        double std = SampleStd ? rng.Uniform(0, Std) : Std;
        var generator = rng.Generator();
        using var scope = NewDisposeScope();
        var noise = randn(Spatial.Shape(sample.Image), dtype: ScalarType.Float32, generator: generator);
        var image = sample.Image + (noise * std + Mean);
        return Spatial.Keep(scope, Intensity.WithImage(sample, image));
    }
}
