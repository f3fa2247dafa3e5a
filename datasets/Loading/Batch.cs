using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Datasets.Loading;

/// <summary>
/// One batch: every sample has the same dimensionality and shape. <see cref="Views"/> holds one stacked view per
/// augmentation of the samples (one, or two for contrastive objectives); <see cref="Metas"/> names each sample.
/// <see cref="Index"/> is the batch's position in the loader's order, which is all a checkpoint needs to resume.
/// </summary>
public sealed record Batch(long Index, IReadOnlyList<BatchView> Views, IReadOnlyList<SampleMeta> Metas) : IDisposable
{
    /// <summary>The first view's images [B,C,H,W] or [B,C,D,H,W].</summary>
    public Tensor Images => Views[0].Images;

    public int Count => Metas.Count;

    public Dimensionality Dimensionality => Metas[0].Dimensionality;

    public void Dispose()
    {
        foreach (var view in Views) view.Dispose();
    }
}

/// <summary>One view of a batch: images [B,C,…], targets [B,…] (masks or target images) and coordinates [B,A,…] where the samples had them.</summary>
public sealed record BatchView(Tensor Images, Tensor? Targets, Tensor? Coordinates) : IDisposable
{
    public void Dispose()
    {
        Images.Dispose();
        Targets?.Dispose();
        Coordinates?.Dispose();
    }
}
