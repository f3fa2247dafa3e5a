using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// A pipeline (MONAI's <c>Compose</c>): each transform takes the previous one's output. Intermediate tensors are freed
/// when the pipeline returns; the input is left as it was.
/// </summary>
public sealed record Compose(IReadOnlyList<ITransform> Transforms) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        if (Transforms.Count == 0) return Spatial.Passthrough(sample);
        using var scope = NewDisposeScope();
        var current = sample;
        foreach (var transform in Transforms) current = transform.Apply(current, rng);
        return Spatial.Keep(scope, current);
    }
}
