namespace Medformer.Datasets.Transforms;

/// <summary>
/// Applies <paramref name="Transform"/> with probability <paramref name="Probability"/>, else passes the sample through
/// (torchvision's <c>RandomApply</c>); for wrapping a deterministic transform or a whole pipeline.
/// </summary>
public sealed record RandomApply(ITransform Transform, double Probability = 0.5) : ITransform
{
    public Sample Apply(Sample sample, Random rng) =>
        rng.Chance(Probability) ? Transform.Apply(sample, rng) : Spatial.Passthrough(sample);
}
