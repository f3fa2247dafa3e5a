using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Windowing, normalisation and the intensity augmentations: values on hand-made inputs, 2D and 3D.</summary>
public sealed class TransformIntensityTests
{
    static readonly Random Rng = new(0);

    static Sample Values(float[] values, int axes = 2)
    {
        long[] shape = axes == 2 ? [1, 1, values.Length] : [1, 1, 1, values.Length];
        return new Sample(tensor(values).view(shape), Meta(axes), zeros(shape, dtype: ScalarType.Int64), CoordinateGrid.Identity(shape[1..]));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void CtWindowMapsCentrePlusMinusHalfWidthToTheRangeEnds(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Values([-1000, -160, 40, 240, 1000, 140], axes);
        Near([0, 0, 0.5, 1, 1, 0.75], ScaleIntensityRange.Window(40, 400).Apply(sample, Rng).Image);
        Near([-1, -1, 0, 1, 1, 0.5], ScaleIntensityRange.Window(40, 400, -1, 1).Apply(sample, Rng).Image);
        // A range, unclipped (MONAI's default).
        Near([-4.2, 0, 1, 2, 5.8, 1.5], new ScaleIntensityRange(-160, 240, 0, 2).Apply(sample, Rng).Image);
        var windowed = ScaleIntensityRange.Window(40, 400).Apply(sample, Rng);
        Assert.Equal(Longs(sample.Target!), Longs(windowed.Target!));
        Assert.Equal(Floats(sample.Coordinates!), Floats(windowed.Coordinates!));
        Assert.Throws<ArgumentException>(() => ScaleIntensityRange.Window(40, 0));
        Assert.Throws<ArgumentException>(() => new ScaleIntensityRange(5, 5).Apply(sample, Rng));
    }

    [Fact]
    public void PercentilesInterpolateAsNumpyAndCanGoPerChannel()
    {
        using var scope = NewDisposeScope();
        // numpy.percentile([0, 1, 2, 3], 25) = 0.75 and (…, 75) = 2.25.
        var sample = Values([0, 1, 2, 3]);
        Near([-0.5, 1.0 / 6, 5.0 / 6, 1.5], new ScaleIntensityRangePercentiles(25, 75).Apply(sample, Rng).Image);
        Near([0, 1.0 / 6, 5.0 / 6, 1], new ScaleIntensityRangePercentiles(25, 75, Clip: true).Apply(sample, Rng).Image);
        var channels = new Sample(tensor(new float[] { 0, 1, 2, 3, 10, 20, 30, 40 }).view(2, 1, 4), Meta(2));
        Near([0, 1.0 / 3, 2.0 / 3, 1, 0, 1.0 / 3, 2.0 / 3, 1], new ScaleIntensityRangePercentiles(0, 100, ChannelWise: true).Apply(channels, Rng).Image);
        Near(new double[] { 0, 1, 2, 3, 10, 20, 30, 40 }.Select(v => v / 40.0).ToArray(), new ScaleIntensityRangePercentiles(0, 100).Apply(channels,
            Rng).Image);
        // Over the nonzero voxels only: percentiles of {2, 4, 6, 8}, zeros untouched.
        var background = Values([0, 2, 0, 4, 6, 8]);
        Near([0, 0, 0, 1.0 / 3, 2.0 / 3, 1], new ScaleIntensityRangePercentiles(0, 100, Nonzero: true).Apply(background, Rng).Image);
        Near([0, 0.25, 0, 0.5, 0.75, 1], new ScaleIntensityRangePercentiles(0, 100).Apply(background, Rng).Image);
        // A flat image maps to BMin rather than dividing by zero.
        Near([-1, -1, -1], new ScaleIntensityRangePercentiles(1, 99, -1, 1).Apply(Values([5, 5, 5]), Rng).Image);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void ZScoreUsesThePopulationStdOverAllOrNonzeroVoxels(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Values([0, 0, 1, 3], axes);
        // mean 1, population std √(1+1+0+4)/2 = √1.5
        double s = Math.Sqrt(1.5);
        Near([-1 / s, -1 / s, 0, 2 / s], new NormalizeIntensity().Apply(sample, Rng).Image);
        // Nonzero: mean 2, std 1 over {1, 3}; the zeros stay.
        Near([0, 0, -1, 1], new NormalizeIntensity(Nonzero: true).Apply(sample, Rng).Image);
        Near([-1, -1, 0, 2], new NormalizeIntensity(Subtrahend: [1], Divisor: [1]).Apply(sample, Rng).Image);
        Near([0, 0, 0, 0], new NormalizeIntensity().Apply(Values([4, 4, 4, 4], axes), Rng).Image);
        var channels = new Sample(tensor(new float[] { 1, 3, 10, 30 }).view(2, 1, 2), Meta(2));
        Near([-1, 1, -1, 1], new NormalizeIntensity(ChannelWise: true).Apply(channels, Rng).Image);
        Near([0, 1, 2, 12], new NormalizeIntensity(Subtrahend: [1, 6], Divisor: [2, 2], ChannelWise: true).Apply(channels, Rng).Image);
        Assert.Throws<ArgumentException>(() => new NormalizeIntensity(Divisor: [0]).Apply(sample, Rng));
    }

    [Fact]
    public void ScaleShiftAndContrastStayInTheirRanges()
    {
        using var scope = NewDisposeScope();
        var sample = Values([0, 1, 2, 4]);
        for (int seed = 0; seed < 10; seed++)
        {
            var scaled = new RandScaleIntensity(0.2, Probability: 1).Apply(sample, new Random(seed));
            double factor = scaled.Image[0, 0, 3].item<float>() / 4.0;
            Assert.InRange(factor, 0.8, 1.2);
            Near([0, factor, 2 * factor, 4 * factor], scaled.Image);
            var shifted = new RandShiftIntensity(0.5, Probability: 1).Apply(sample, new Random(seed));
            double offset = shifted.Image[0, 0, 0].item<float>();
            Assert.InRange(offset, -0.5, 0.5);
            Near([offset, 1 + offset, 2 + offset, 4 + offset], shifted.Image);
            var contrast = new RandAdjustContrast(Probability: 1, MinGamma: 0.5, MaxGamma: 2).Apply(sample, new Random(seed));
            var v = Floats(contrast.Image);
            Assert.Equal(0, v[0], 5);
            Assert.Equal(4, v[3], 4);
            // v = (x/4)^γ · 4: γ from the middle value.
            double gamma = Math.Log(v[2] / 4) / Math.Log(0.5);
            Assert.InRange(gamma, 0.5 - 1e-4, 2 + 1e-4);
            Assert.Equal(Math.Pow(0.25, gamma) * 4, v[1], 4);
        }
        Assert.Equal(Floats(sample.Image), Floats(new RandScaleIntensity(0.2, Probability: 0).Apply(sample, Rng).Image));
    }

    [Fact]
    public void NoiseHasTheAskedMoments()
    {
        using var scope = NewDisposeScope();
        var volume = new Sample(full([1, 32, 32, 32], 3f), Meta(3));
        var noisy = new RandGaussianNoise(Probability: 1, Mean: 0.5, Std: 0.2, SampleStd: false).Apply(volume, new Random(1));
        var noise = noisy.Image - 3f;
        Assert.Equal(0.5, noise.mean().item<float>(), 2);
        Assert.Equal(0.2, noise.std().item<float>(), 2);
        Assert.Equal(Floats(noisy.Image), Floats(new RandGaussianNoise(Probability: 1, Mean: 0.5, Std: 0.2, SampleStd: false).Apply(volume,
            new Random(1)).Image));
        Assert.NotEqual(Floats(noisy.Image), Floats(new RandGaussianNoise(Probability: 1, Mean: 0.5, Std: 0.2, SampleStd: false).Apply(volume,
            new Random(2)).Image));
        // Sampled std: at most Std.
        var sampled = new RandGaussianNoise(Probability: 1, Std: 0.2).Apply(volume, new Random(3)).Image - 3f;
        Assert.True(sampled.std().item<float>() < 0.21);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void SmoothingIsASeparableNormalisedGaussian(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = Enumerable.Repeat(11L, axes).ToArray();
        var values = new float[(int)Math.Pow(11, axes)];
        values[values.Length / 2] = 1;
        var impulse = tensor(values).view(new long[] { 1 }.Concat(shape).ToArray());
        var blur = new RandGaussianSmooth(Probability: 1, MinSigma: 1, MaxSigma: 1);
        var response = blur.Apply(new Sample(impulse, Meta(axes)), Rng).Image;
        Assert.Equal(1.0, response.sum().item<float>(), 5);
        // Sampled σ = 1 kernel, cut at 4σ: centre weight 1/Σ exp(−i²/2) = 0.398942; one per axis.
        Assert.True(Math.Abs(Math.Pow(0.3989423, axes) - response.max().item<float>()) < 1e-5);
        Assert.Equal(Floats(response), Floats(response.flip(Enumerable.Range(1, axes).Select(a => (long)a).ToArray())));
        // A constant image stays constant (edges replicated, not zero-padded).
        var flat = blur.Apply(new Sample(full(new long[] { 2 }.Concat(shape).ToArray(), 7f), Meta(axes)), Rng).Image;
        Assert.True((flat - 7f).abs().max().item<float>() < 1e-5);
    }

    [Fact]
    public void IntensityTransformsLeaveTargetAndCoordinatesAlone()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([5, 6]);
        ITransform[] all =
        [
            new RandScaleIntensity(0.3, 1), new RandShiftIntensity(0.3, 1), new RandAdjustContrast(1), new RandGaussianNoise(1),
            new RandGaussianSmooth(1), new NormalizeIntensity(), new ScaleIntensityRangePercentiles(5, 95), ScaleIntensityRange.Window(10, 20),
        ];
        foreach (var transform in all)
        {
            var output = transform.Apply(sample, new Random(7));
            Assert.Equal(Longs(sample.Target!), Longs(output.Target!));
            Assert.Equal(Floats(sample.Coordinates!), Floats(output.Coordinates!));
            Assert.NotEqual(Floats(sample.Image), Floats(output.Image));
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void CoarseDropoutFillsBoxesOfTheAskedSizesInsideTheImage(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = TransformSamples.Positions(Shape(axes));
        long[] spatial = Shape(axes);
        for (int seed = 0; seed < 20; seed++)
        {
            // One box of 2 to 3 voxels a side, filled with -1: its voxels are -1, every other voxel keeps its value.
            var result = new RandCoarseDropout(1, [2], FillValue: -1, MaxSpatialSize: [3], Probability: 1).Apply(sample, new Random(seed));
            var filled = result.Image.eq(-1);
            long count = filled.sum().item<long>();
            var nonzero = filled[0].nonzero();
            long[] extents = [.. Enumerable.Range(0, axes).Select(a => nonzero[.., a].max().item<long>() - nonzero[.., a].min().item<long>() + 1)];
            Assert.All(extents, e => Assert.InRange(e, 2, 3));
            Assert.Equal(extents.Aggregate(1L, (p, e) => p * e), count);
            Assert.True(result.Image.where(filled.logical_not(), sample.Image).eq(sample.Image).all().item<bool>(), "voxels outside the box keep their values");
            Assert.Equal(Longs(sample.Target!), Longs(result.Target!));
        }
        // Boxes larger than the image are clipped to it; probability 0 passes the image through.
        Assert.True(new RandCoarseDropout(1, [9], Probability: 1).Apply(sample, Rng).Image.eq(0).all().item<bool>());
        Assert.Equal(Floats(sample.Image), Floats(new RandCoarseDropout(1, [2], Probability: 0).Apply(sample, Rng).Image));
        Assert.Contains("holes 0 must be at least 1", Assert.Throws<ArgumentException>(() => new RandCoarseDropout(0, [2]).Apply(sample, Rng)).Message);
        Assert.Contains("the maxima [1", Assert.Throws<ArgumentException>(() => new RandCoarseDropout(1, [2], MaxSpatialSize: [1]).Apply(sample, Rng)).Message);
    }
}
