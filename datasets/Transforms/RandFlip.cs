namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, reverses the listed spatial axes together (null = all), MONAI's
/// <c>RandFlip</c>. For an independent coin per axis, compose one RandFlip per axis.
/// </summary>
public sealed record RandFlip(double Probability = 0.1, int[]? Axes = null) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandFlip));
        return rng.Chance(Probability) ? new Flip(Axes).Apply(sample, rng) : Spatial.Passthrough(sample);
    }
}
