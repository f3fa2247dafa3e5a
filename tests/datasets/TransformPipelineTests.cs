using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using TorchSharp;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Compose, OneOf and RandomApply; determinism and tensor hygiene of every transform; throughput.</summary>
public sealed class TransformPipelineTests
{
    static readonly Random Rng = new(0);

    /// <summary>Every transform with its randomness switched on.</summary>
    static IEnumerable<(string Name, ITransform Transform)> All(int axes)
    {
        yield return ("RandFlip", new RandFlip(0.5));
        yield return ("RandRotate90", new RandRotate90(1));
        yield return ("RandSpatialCrop", new RandSpatialCrop([3], RandomSize: true));
        yield return ("RandResizedCrop", new RandResizedCrop([5]));
        yield return ("RandAffine", new RandAffine(1, RotateRange: [0.4], ScaleRange: [0.1], TranslateRange: [1], ShearRange: [0.1]));
        yield return ("RandScaleIntensity", new RandScaleIntensity(0.3, 1));
        yield return ("RandShiftIntensity", new RandShiftIntensity(0.3, 1));
        yield return ("RandAdjustContrast", new RandAdjustContrast(1));
        yield return ("RandGaussianNoise", new RandGaussianNoise(1));
        yield return ("RandGaussianSmooth", new RandGaussianSmooth(1));
        yield return ("OneOf", new OneOf([new RandFlip(1, [0]), new RandFlip(1, [1]), new RandGaussianNoise(1)]));
        yield return ("RandomApply", new RandomApply(new RandGaussianNoise(1), 0.5));
        yield return ("Compose", new Compose([new RandFlip(0.5), new RandGaussianNoise(1)]));
    }

    static IEnumerable<(string Name, ITransform Transform)> Deterministic(int axes)
    {
        yield return ("Flip", new Flip());
        yield return ("Rotate90", new Rotate90());
        yield return ("Affine", new Affine([0.2]));
        yield return ("SpatialPad", new SpatialPad([9]));
        yield return ("CenterSpatialCrop", new CenterSpatialCrop([3]));
        yield return ("ResizeWithPadOrCrop", new ResizeWithPadOrCrop([5]));
        yield return ("Resize", new Resize([3]));
        yield return ("Spacing", new Spacing([0.7]));
        yield return ("ScaleIntensityRange", ScaleIntensityRange.Window(10, 20));
        yield return ("ScaleIntensityRangePercentiles", new ScaleIntensityRangePercentiles(5, 95));
        yield return ("NormalizeIntensity", new NormalizeIntensity());
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void SameSeedSameOutputAndOtherSeedsDiffer(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Positions(Shape(axes));
        foreach (var (name, transform) in All(axes))
        {
            var first = transform.Apply(sample, new Random(42));
            var again = transform.Apply(sample, new Random(42));
            Assert.True(Floats(first.Image).SequenceEqual(Floats(again.Image)), $"{name}: same seed, different images");
            Assert.True(Floats(first.Coordinates!).SequenceEqual(Floats(again.Coordinates!)), $"{name}: same seed, different coordinates");
            bool differs = Enumerable.Range(0, 8).Any(seed =>
            {
                var other = transform.Apply(sample, new Random(seed));
                return !other.Image.shape.SequenceEqual(first.Image.shape) || !Floats(other.Image).SequenceEqual(Floats(first.Image));
            });
            Assert.True(differs, $"{name}: eight other seeds all gave the seed-42 image");
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void TransformsLeaveOnlyTheirOutputInTheCallersScopeAndTheInputIntact(int axes)
    {
        var sample = Positions(Shape(axes));
        var image = Floats(sample.Image);
        foreach (var (name, transform) in All(axes).Concat(Deterministic(axes)))
        {
            using var scope = NewDisposeScope();
            var result = transform.Apply(sample, new Random(3));
            Assert.True(scope.DisposablesCount == 3, $"{name}: {scope.DisposablesCount} tensors left in the caller's scope, expected the 3 of its output");
            Assert.Equal(ScalarType.Float32, result.Image.dtype);
            Assert.Equal(ScalarType.Int64, result.Target!.dtype);
            Assert.Equal(axes + 1, result.Image.dim());
            result.Dispose();
            Assert.Equal(image, Floats(sample.Image));
        }
        sample.Dispose();
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void FloatTargetsGoWhereTheImageGoesWithTheSameInterpolation(int axes)
    {
        using var scope = NewDisposeScope();
        var positions = Positions(Shape(axes));
        // An image-to-image sample whose target is a copy of the image: every spatial transform must keep them equal.
        var sample = new Sample(positions.Image, positions.Meta, positions.Image.clone(), positions.Coordinates);
        ITransform[] spatial =
        [
            new RandFlip(1), new RandRotate90(1), new RandSpatialCrop([3]), new RandResizedCrop([5]), new Resize([9]), new Spacing([0.6]),
            new RandAffine(1, RotateRange: [0.4], ScaleRange: [0.2]), new RandAffine(1, RotateRange: [0.4], PaddingMode: GridSamplePaddingMode.Zeros),
            new SpatialPad([9], Value: 3), new ResizeWithPadOrCrop(axes == 2 ? [5, 8] : [3, 5, 8]), new CenterSpatialCrop([3]),
        ];
        foreach (var transform in spatial)
        {
            var output = transform.Apply(sample, new Random(9));
            Assert.Equal(ScalarType.Float32, output.Target!.dtype);
            Assert.True(Floats(output.Image).SequenceEqual(Floats(output.Target!)), $"{transform.GetType().Name}: the float target left the image");
        }
    }

    [Fact]
    public void ComposeRunsInOrderAndOneOfFollowsItsWeights()
    {
        using var scope = NewDisposeScope();
        var sample = new Sample(arange(6, dtype: ScalarType.Float32).view(1, 2, 3), Meta(2));
        var pipeline = new Compose([new Flip([1]), new ScaleIntensityRange(0, 10, 0, 1), new SpatialPad([2, 4], PadMethod.End, Value: -1)]);
        Near([0.2, 0.1, 0, -1, 0.5, 0.4, 0.3, -1], pipeline.Apply(sample, Rng).Image);
        var onlySecond = new OneOf([new Flip([0]), new Flip([1])], [0, 1]);
        for (int seed = 0; seed < 5; seed++)
            Assert.Equal([2f, 1, 0, 5, 4, 3], Floats(onlySecond.Apply(sample, new Random(seed)).Image));
        var either = new OneOf([new Flip([0]), new Flip([1])]);
        var outcomes = Enumerable.Range(0, 20).Select(seed => string.Join(",", Floats(either.Apply(sample, new Random(seed)).Image))).ToHashSet();
        Assert.Equal(2, outcomes.Count);
        Assert.Equal(Floats(sample.Image), Floats(new RandomApply(new Flip(), 0).Apply(sample, Rng).Image));
        Assert.Equal([5f, 4, 3, 2, 1, 0], Floats(new RandomApply(new Flip(), 1).Apply(sample, Rng).Image));
        Assert.Equal(Floats(sample.Image), Floats(new Compose([]).Apply(sample, Rng).Image));
        Assert.Throws<ArgumentException>(() => new OneOf([new Flip()], [0]).Apply(sample, Rng));
    }

    [Fact]
    public void TheLoadersHotPathsGiveWhatTrainingTakes()
    {
        // The loader's two hot paths (their speed is bench/run data's): 28×28 two-view pretraining and 96³ CT crops.
        using var scope = NewDisposeScope();
        var rng = new Random(7);
        var views = new TwoViews(new Compose([
            new RandResizedCrop([28], MinScale: 0.2), new RandFlip(0.5, [1]), new RandRotate90(0.5),
            new RandScaleIntensity(0.2, 0.8), new RandShiftIntensity(0.1, 0.8), new RandGaussianNoise(0.5, Std: 0.05), new RandGaussianSmooth(0.3),
        ]));
        using var small = Positions([28, 28], mask: false, coordinates: false);
        for (int i = 0; i < 10; i++)
        {
            var pair = views.Apply(small, rng);
            Assert.Equal([1L, 28, 28], pair.First.Image.shape);
            Assert.Equal([1L, 28, 28], pair.Second.Image.shape);
            Assert.True(pair.First.Image.isfinite().all().item<bool>() && pair.Second.Image.isfinite().all().item<bool>());
            Assert.False(pair.First.Image.allclose(pair.Second.Image));  // two draws, two views
        }
        var ct = new Compose([
            ScaleIntensityRange.Window(40, 400), new RandSpatialCrop([96]), new RandFlip(0.5, [2]), new RandRotate90(0.5, SpatialAxes: [1, 2]),
            new RandScaleIntensity(0.1, 0.5), new RandGaussianNoise(0.3, Std: 0.02),
        ]);
        using var volume = new Sample(randn(1, 112, 112, 112) * 300, Meta(3), zeros([1, 112, 112, 112], dtype: ScalarType.Int64));
        for (int i = 0; i < 3; i++)
        {
            var crop = ct.Apply(volume, rng);
            Assert.Equal([1L, 96, 96, 96], crop.Image.shape);
            Assert.Equal([1L, 96, 96, 96], crop.Target!.shape);
            Assert.Equal(ScalarType.Int64, crop.Target.dtype);
        }
    }
}
