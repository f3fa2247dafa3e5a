using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Two augmented views of one image, for contrastive and pixel-level objectives (PixPro, "Propagate Yourself",
/// Xie et al., 2021). The input gets an identity coordinate grid (replacing any it had, so coordinates are in
/// pixels of this input), then <paramref name="Augment"/> makes the first view and <paramref name="SecondAugment"/>
/// (default: the same pipeline, new draws) the second. Each view's Coordinates say which input point each of its
/// pixels shows; <see cref="PixelPairs"/> turns two of them into positive pairs.
/// </summary>
public sealed record TwoViews(ITransform Augment, ITransform? SecondAugment = null)
{
    public ViewPair Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(TwoViews));
        using var scope = NewDisposeScope();
        var origin = new Sample(sample.Image.alias(), sample.Meta, sample.Target?.alias(), CoordinateGrid.Identity(Spatial.SpatialShape(sample)));
        var first = Augment.Apply(origin, rng);
        var second = (SecondAugment ?? Augment).Apply(origin, rng);
        Spatial.Keep(scope, first);
        Spatial.Keep(scope, second);
        return new ViewPair(first, second);
    }
}
