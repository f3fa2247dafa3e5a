using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// The output of an <see cref="IMixTransform"/>: the mixed sample and its consistency target.
/// <list type="bullet">
/// <item><see cref="Sample"/>: image = Σ_k w_k · image_k; its Target, when the parts have targets, is the mixed
/// target: float targets mixed like the image, masks as soft masks Σ_k w_k · one-hot(mask_k) [classes, …] (a float
/// target image); no Coordinates. Its meta is the first part's, the sources joined with " + ", labels empty.</item>
/// <item><see cref="Weights"/>: [K] (one weight per part, summing to 1) or [K, …spatial] (a weight map per part,
/// summing to 1 at every pixel).</item>
/// <item><see cref="SoftLabels"/>: [classes] float, Σ_k w̄_k · y_k with y_k the part's label as one-hot (or its 0/1
/// entries when multi-label) and w̄_k its mean weight; null when the mixer has no class count.</item>
/// </list>
/// A model is then asked to be consistent with the mix of its own predictions on the parts:
/// <c>loss(model(mix), BrainFuse.Combine(predictions on the parts, Weights))</c>.
/// </summary>
public sealed record MixedSample(Sample Sample, Tensor Weights, Tensor? SoftLabels) : IDisposable
{
    public void Dispose()
    {
        Sample.Dispose();
        Weights.Dispose();
        SoftLabels?.Dispose();
    }
}
