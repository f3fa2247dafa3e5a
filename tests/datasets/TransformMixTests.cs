using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>BrainFuse mixing: convex weights, spatial weight maps, soft masks and labels, the consistency target.</summary>
public sealed class TransformMixTests
{
    static Sample Part(long[] shape, float value, long mask, long label, string source) =>
        new(full(new long[] { 1 }.Concat(shape).ToArray(), value), Meta(shape.Length, labels: [label], source: source),
            full(new long[] { 1 }.Concat(shape).ToArray(), mask, dtype: ScalarType.Int64));

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void DirichletMixIsAConvexCombinationWithSoftTargets(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = Enumerable.Repeat(4L, axes).ToArray();
        Sample[] parts = [Part(shape, 1, 0, 2, "a.nii"), Part(shape, 10, 1, 0, "b.nii"), Part(shape, 100, 1, 2, "c.nii")];
        var mixer = new BrainFuse(Alpha: 0.7, ClassCount: 3);
        using var mixed = mixer.Mix(parts, new Random(5));
        var w = Floats(mixed.Weights);
        Assert.Equal(3, w.Length);
        Assert.All(w, x => Assert.InRange(x, 0, 1));
        Assert.Equal(1.0, w.Sum(), 5);
        Assert.True((mixed.Sample.Image - (w[0] * 1 + w[1] * 10 + w[2] * 100)).abs().max().item<float>() < 1e-3);
        // Soft mask [classes, …]: class 0 from part a, class 1 from b and c.
        Assert.Equal(new long[] { 3 }.Concat(shape), mixed.Sample.Target!.shape);
        Near([w[0], w[1] + w[2], 0], mixed.Sample.Target!.flatten(1)[.., 0]);
        // Soft labels: a is class 2, b class 0, c class 2.
        Near([w[1], 0, w[0] + w[2]], mixed.SoftLabels!);
        Assert.Equal("a.nii + b.nii + c.nii", mixed.Sample.Meta.Source);
        Assert.Empty(mixed.Sample.Meta.Labels);
        Assert.Null(mixed.Sample.Coordinates);
        // The consistency target: the model's predictions on the parts, mixed the same way.
        var predictions = stack(parts.Select(p => p.Image * 2).ToArray());
        Assert.Equal(Floats(mixed.Sample.Image * 2), Floats(BrainFuse.Combine(predictions, mixed.Weights)));
        using var again = mixer.Mix(parts, new Random(5));
        Assert.Equal(w, Floats(again.Weights));
        using var other = mixer.Mix(parts, new Random(6));
        Assert.NotEqual(w, Floats(other.Weights));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void SpatialWeightMapsSumToOneEverywhereAndVary(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = Enumerable.Repeat(12L, axes).ToArray();
        Sample[] parts = [Part(shape, 0, 0, 0, "a"), Part(shape, 1, 1, 1, "b")];
        using var mixed = new BrainFuse(Weights: MixWeights.Spatial, ControlGrid: [3], ClassCount: 2).Mix(parts, new Random(2));
        Assert.Equal(new long[] { 2 }.Concat(shape), mixed.Weights.shape);
        Assert.True((mixed.Weights.sum(dim: 0) - 1).abs().max().item<float>() < 1e-5);
        Assert.True(mixed.Weights.min().item<float>() >= 0);
        Assert.True(mixed.Weights[0].max().item<float>() - mixed.Weights[0].min().item<float>() > 0.1, "the weights do not vary in space");
        // Part b is 1 and a is 0, so the image is b's weight map; the soft mask's class 1 too.
        Assert.Equal(Floats(mixed.Weights[1]), Floats(mixed.Sample.Image[0]));
        Assert.Equal(Floats(mixed.Weights[1]), Floats(mixed.Sample.Target![1]));
        Near([1 - mixed.Weights[1].mean().item<float>(), mixed.Weights[1].mean().item<float>()], mixed.SoftLabels!);
        var predictions = stack(parts.Select(p => p.Image).ToArray());
        Assert.Equal(Floats(mixed.Sample.Image), Floats(BrainFuse.Combine(predictions, mixed.Weights)));
    }

    [Fact]
    public void FloatTargetsMixLikeTheImageAndMisfitsAreRefused()
    {
        using var scope = NewDisposeScope();
        var a = new Sample(full([1, 4, 4], 2f), Meta(2, source: "a"), full([2, 4, 4], 4f));
        var b = new Sample(full([1, 4, 4], 6f), Meta(2, source: "b"), full([2, 4, 4], 8f));
        using var mixed = new BrainFuse().Mix([a, b], new Random(1));
        var w = Floats(mixed.Weights);
        Assert.True((mixed.Sample.Target! - (4 * w[0] + 8 * w[1])).abs().max().item<float>() < 1e-5);
        Assert.Null(mixed.SoftLabels);
        var small = new Sample(full([1, 3, 4], 6f), Meta(2, source: "small.nii"));
        Assert.Contains("small.nii", Assert.Throws<ArgumentException>(() => new BrainFuse().Mix([a, small], new Random(1))).Message);
        Assert.Throws<ArgumentException>(() => new BrainFuse().Mix([a], new Random(1)));
        var masked = Part([4, 4], 1, 5, 0, "m");
        Assert.Throws<ArgumentException>(() => new BrainFuse(ClassCount: 3).Mix([masked, masked], new Random(1)));
    }
}
