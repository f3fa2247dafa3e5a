using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Resize, Spacing, RandResizedCrop and Affine. Reference numbers: the output of
/// <c>/usr/bin/python3 tests/reference/resample.py</c> (Debian's PyTorch 1.13, float64), kept here: F.interpolate for
/// the resizes, and for the affine cases F.grid_sample (align_corners=False) on a grid built point by point from
/// q = M(p − c) + c + t, not by affine_grid, so they check our θ.
/// </summary>
public sealed class TransformResampleTests
{
    static readonly Random Rng = new(0);

    [Fact]
    public void ResizeMatchesPyTorchInterpolate()
    {
        using var scope = NewDisposeScope();
        var image = new Sample(arange(6, dtype: ScalarType.Float32).view(1, 2, 3), Meta(2, [3.0, 5.0]), tensor(new long[] { 0, 1, 2, 3, 4, 5 }).view(1, 2, 3));
        var resized = new Resize([3, 5]).Apply(image, Rng);
        // F.interpolate(arange(6).view(1,1,2,3), size=(3,5), mode="bilinear", align_corners=False)
        Near([0.0, 0.4, 1.0, 1.6, 2.0, 1.5, 1.9, 2.5, 3.1, 3.5, 3.0, 3.4, 4.0, 4.6, 5.0], resized.Image);
        Assert.Equal([2.0, 3.0], resized.Meta.Spacing);
        var masks = new Resize([4, 5]).Apply(image, Rng);
        // F.interpolate(..., size=(4,5), mode="nearest-exact")
        Assert.Equal([0L, 0, 1, 2, 2, 0, 0, 1, 2, 2, 3, 3, 4, 5, 5, 3, 3, 4, 5, 5], Longs(masks.Target!));
        Assert.Equal(ScalarType.Int64, masks.Target!.dtype);
        var volume = new Sample(arange(12, dtype: ScalarType.Float32).view(1, 2, 2, 3), Meta(3));
        // F.interpolate(arange(12).view(1,1,2,2,3), size=(3,3,4), mode="trilinear", align_corners=False)
        Near([0.0, 0.625, 1.375, 2.0, 1.5, 2.125, 2.875, 3.5, 3.0, 3.625, 4.375, 5.0, 3.0, 3.625, 4.375, 5.0, 4.5, 5.125, 5.875, 6.5,
              6.0, 6.625, 7.375, 8.0, 6.0, 6.625, 7.375, 8.0, 7.5, 8.125, 8.875, 9.5, 9.0, 9.625, 10.375, 11.0], new Resize([3, 3, 4]).Apply(volume,
                  Rng).Image);
    }

    [Fact]
    public void ResizedCoordinatesAreTheSampledPointsEvenPastTheEdge()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([3, 4]);
        var up = new Resize([6, 2]).Apply(sample, Rng);
        // Upsampling ×2: output p samples (p + 0.5)/2 - 0.5; downsampling ×½: 2p + 0.5.
        Near([-0.25, 0.25, 0.75, 1.25, 1.75, 2.25], up.Coordinates![0][.., 0]);
        Near([0.5, 2.5], up.Coordinates![1][0]);
        // Inside the image the value is the position's value (bilinear is exact on this affine image).
        var inside = up.Coordinates![0][1..5];
        Near(Floats(PositionValue(up.Coordinates![.., 1..5], [3, 4])).Select(v => (double)v).ToArray(), up.Image[0][1..5]);
        Assert.Equal(4, inside.shape[0]);
        var nearest = new Resize([6, 2], Interpolation.Nearest).Apply(sample, Rng);
        CoordinatesShowOriginal(sample.Image, nearest);
    }

    [Fact]
    public void SpacingTwoToOneDoublesTheExtentsAndKeepsAConstantField()
    {
        using var scope = NewDisposeScope();
        var volume = new Sample(full([1, 4, 3, 5], 7.5f), Meta(3, [2.0, 2.0, 2.0]), ones([1, 4, 3, 5], dtype: ScalarType.Int64) * 2, CoordinateGrid.Identity([4,
            3, 5]));
        var resampled = new Spacing([1.0]).Apply(volume, Rng);
        Assert.Equal([1L, 8, 6, 10], resampled.Image.shape);
        Assert.True((resampled.Image - 7.5f).abs().max().item<float>() < 1e-5);
        Assert.Equal([1.0, 1.0, 1.0], resampled.Meta.Spacing);
        Assert.Equal(ScalarType.Int64, resampled.Target!.dtype);
        Assert.Equal([2L], Longs(resampled.Target!.unique().Item1));
        // Voxel p of spacing 1 sits at (p + 0.5)/2 - 0.5 old voxels.
        Near([-0.25, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.25], resampled.Coordinates![0][.., 0, 0]);
        Assert.Equal([2.0, 2.0, 2.0], volume.Meta.Spacing);
    }

    [Fact]
    public void SpacingResamplesEachAxisToItsOwnTarget()
    {
        using var scope = NewDisposeScope();
        var image = Positions([6, 8], spacing: [1.0, 0.5]);
        var resampled = new Spacing([2.0, 1.0]).Apply(image, Rng);
        Assert.Equal([1L, 3, 4], resampled.Image.shape);
        Assert.Equal([2.0, 1.0], resampled.Meta.Spacing);
        // ×½ on both axes: each output pixel is the mean of a 2×2 block (bilinear at the block centre).
        Near([4.5, 6.5, 8.5, 10.5, 20.5, 22.5, 24.5, 26.5, 36.5, 38.5, 40.5, 42.5], resampled.Image);
        // A non-positive target keeps that axis; a spacing that does not divide rounds the size and reports what it reached.
        var kept = new Spacing([-1.0, 0.3]).Apply(image, Rng);
        Assert.Equal([1L, 6, 13], kept.Image.shape);
        Assert.Equal(1.0, kept.Meta.Spacing[0]);
        Assert.Equal(8 * 0.5 / 13, kept.Meta.Spacing[1], 12);
        var noSpacing = new Sample(zeros(1, 4, 4), new SampleMeta("test", "nospacing.npy", 0, "other", "ct", Dimensionality.Image, [], []));
        Assert.Contains("nospacing.npy", Assert.Throws<ArgumentException>(() => new Spacing([1.0]).Apply(noSpacing, Rng)).Message);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void RandResizedCropKeepsItsSizeScaleAndRatio(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = axes == 2 ? [28, 28] : [24, 24, 24];
        var sample = Positions(shape, spacing: Enumerable.Repeat(1.0, axes).ToArray());
        var crop = new RandResizedCrop([8], MinScale: 0.3, MaxScale: 0.6);
        double volume = shape.Aggregate(1.0, (v, n) => v * n);
        for (int seed = 0; seed < 20; seed++)
        {
            var view = crop.Apply(sample, new Random(seed));
            Assert.Equal(Enumerable.Repeat(8L, axes), view.Image.shape[1..]);
            // The region's sides, from the meta (spacing × 8) and from the coordinates (first to last sample + one step).
            double[] sides = view.Meta.Spacing.Select(s => s * 8).ToArray();
            double covered = sides.Aggregate(1.0, (v, s) => v * s) / volume;
            Assert.InRange(covered, 0.3 * 0.8, 0.6 * 1.25);   // sides are rounded to whole pixels
            for (int a = 0; a < axes - 1; a++) Assert.InRange(sides[axes - 1] / sides[a], 0.75 * 0.8, 4.0 / 3 * 1.25);
            var along = view.Coordinates![0].flatten();
            double first = along[0].item<float>(), last = along[^1].item<float>();
            Assert.Equal(sides[0], (last - first) * 8 / 7, 3);
            // Downsampling only here, so every output point lies inside its region: values are the positions' values.
            Near(Floats(PositionValue(view.Coordinates!, shape)).Select(v => (double)v).ToArray(), view.Image[0], 1e-4);
            Assert.Equal(Floats(view.Image), Floats(crop.Apply(sample, new Random(seed)).Image));
        }
        Assert.NotEqual(Floats(crop.Apply(sample, new Random(1)).Image), Floats(crop.Apply(sample, new Random(2)).Image));
    }

    [Fact]
    public void RandResizedCropFallsBackToTheCentreWhenNothingFits()
    {
        using var scope = NewDisposeScope();
        var wide = Positions([4, 16]);
        // A ratio range that a region of a 4×16 image at full scale can never meet: torchvision's fallback keeps the
        // height and cuts the width to height × MaxRatio, centred.
        var view = new RandResizedCrop([4, 4], MinScale: 1, MaxScale: 1, MinRatio: 1, MaxRatio: 1).Apply(wide, new Random(3));
        Assert.Equal(Floats(wide.Image[.., .., 6..10]), Floats(view.Image));
        CoordinatesShowOriginal(wide.Image, view);
    }

    [Fact]
    public void Affine2dMatchesGridSampleOnAGridBuiltPointByPoint()
    {
        using var scope = NewDisposeScope();
        var image = new Sample(arange(20, dtype: ScalarType.Float32).view(1, 4, 5), Meta(2));
        var zerosPadded = new Affine([0.3], [1.1, 0.9], [0.5, -0.7], [0.1, -0.05], PaddingMode: GridSamplePaddingMode.Zeros).Apply(image, Rng);
        Near([0.449528646085316, 2.90131864988454, 2.8877787988276005, 2.874238947770661, 2.8606990967137222,
              3.5700577212242584, 8.509466117332806, 8.495926266275866, 8.482386415218926, 8.46884656416199,
              9.598805495972712, 14.117613584781072, 14.104073733724134, 14.090533882667193, 14.076994031610257,
              0.552309869800945, 3.4702697581727926, 6.672061280923551, 10.192935233474405, 14.032891615825386], zerosPadded.Image, 1e-5);
        var reflected = new Affine([0.3], [1.1, 0.9], [0.5, -0.7], [0.1, -0.05]).Apply(image, Rng);
        Near([3.7964508992049586, 2.9013186498845394, 2.8877787988276005, 2.874238947770661, 2.8606990967137222,
              9.13206964622766, 8.509466117332806, 8.495926266275866, 8.482386415218926, 8.46884656416199,
              14.467688393250363, 14.117613584781072, 14.104073733724134, 14.090533882667193, 14.076994031610257, 15.0,
              15.822393421825781, 16.708793080638348, 17.595192739450916, 18.48159239826348], reflected.Image, 1e-5);
    }

    [Fact]
    public void Affine3dMatchesGridSampleOnAGridBuiltPointByPoint()
    {
        using var scope = NewDisposeScope();
        var volume = new Sample(arange(60, dtype: ScalarType.Float32).view(1, 3, 4, 5), Meta(3));
        var warped = new Affine([0.2, -0.1, 0.3], [1.0, 1.2, 0.9], [0.3, 0, -0.4], PaddingMode: GridSamplePaddingMode.Zeros).Apply(volume, Rng);
        Near([3.3445527883101214, 8.385019787107757, 8.162065860231047, 6.1876185454939385, 2.461677842896422,
              7.368256084463918, 11.25897313134155, 13.635728849863224, 16.0124845683849, 18.389240286906578,
              11.394653057653866, 13.403601060295276, 15.780356778816955, 18.15711249733863, 20.53386821586031,
              6.079206885085895, 11.151416792237034, 17.92498470777069, 20.301740426292366, 22.67849614481404,
              9.988985970291882, 29.506302388047736, 26.425406123423077, 20.43460259358122, 12.692305675878966,
              21.06439188570176, 31.650930317001464, 34.02768603552313, 36.40444175404481, 38.78119747256648,
              31.41880252743351, 33.79555824595519, 36.17231396447687, 38.54906968299854, 40.92582540152022,
              9.553718169623625, 18.913077688521824, 30.023930595280426, 40.69369761195227, 43.070453330473946,
              7.822435689066411, 23.65651463609753, 17.836214971320164, 9.459019555834992, 3.5428733565856096,
              26.589601616401275, 36.23401138381514, 29.521130635837768, 22.907566298452533, 16.393318371659422,
              50.06057046151551, 51.130431697204514, 43.52496986602715, 36.018824445441915, 28.611995435448808,
              5.9074338244894875, 19.283149558492426, 34.41035868035577, 43.1754500848273, 43.149596064909915], warped.Image, 1e-5);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void AQuarterTurnByAffineIsRotate90(int axes)
    {
        using var scope = NewDisposeScope();
        long[] cube = Enumerable.Repeat(4L, axes).ToArray();
        var sample = Positions(cube);
        int planes = axes == 2 ? 1 : 3;
        for (int plane = 0; plane < planes; plane++)
        {
            var angles = new double[planes];
            angles[plane] = Math.PI / 2;
            var turned = new Affine(angles, Mode: Interpolation.Nearest, PaddingMode: GridSamplePaddingMode.Zeros).Apply(sample, Rng);
            // q = R(p − c) + c with R turning the first axis towards the second maps output to input, so the image
            // turns the other way: rot90 with k = −1.
            var expected = new Rotate90(-1, RandRotate90.Planes(axes)[plane]).Apply(sample, Rng);
            Assert.Equal(Floats(expected.Image), Floats(turned.Image));
            Assert.Equal(Longs(expected.Target!), Longs(turned.Target!));
            Assert.Equal(ScalarType.Int64, turned.Target!.dtype);
            Near(Floats(expected.Coordinates!).Select(v => (double)v).ToArray(), turned.Coordinates!, 1e-5);
            var linear = new Affine(angles, PaddingMode: GridSamplePaddingMode.Zeros).Apply(sample, Rng);
            Near(Floats(expected.Image).Select(v => (double)v).ToArray(), linear.Image, 1e-4);
        }
    }

    [Fact]
    public void TranslatedCoordinatesFollowThePaddingMode()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([4, 5]);
        var identity = CoordinateGrid.Identity([4, 5]);
        var shift = tensor(new float[] { 1, -2 }).view(2, 1, 1);
        // Zeros: the true points, also outside; the image there is 0 and the mask background.
        var zeros = new Affine(Translate: [1, -2], PaddingMode: GridSamplePaddingMode.Zeros).Apply(sample, Rng);
        Near(Floats(identity + shift).Select(v => (double)v).ToArray(), zeros.Coordinates!);
        Assert.Equal([0f, 0, 5, 6, 7], Floats(zeros.Image[0, 0, ..]));
        Assert.Equal([0f, 0, 0, 0, 0], Floats(zeros.Image[0, 3, ..]));
        Assert.Equal([0L, 0, 0, 0, 0], Longs(zeros.Target![0, 3, ..]));
        // Border: the clamped points, which the image repeats.
        var border = new Affine(Translate: [1, -2], PaddingMode: GridSamplePaddingMode.Border).Apply(sample, Rng);
        CoordinatesShowOriginal(sample.Image, border);
        Assert.Equal([15f, 15, 15, 16, 17], Floats(border.Image[0, 3, ..]));
        // Reflection: mirrored about the image's outer edges (align_corners=False), which the image mirrors too.
        var mirrored = new Affine(Translate: [1, -2], PaddingMode: GridSamplePaddingMode.Reflection).Apply(sample, Rng);
        CoordinatesShowOriginal(sample.Image, mirrored);
        Assert.Equal([16f, 15, 15, 16, 17], Floats(mirrored.Image[0, 3, ..]));
    }

    [Fact]
    public void RandAffineIsDeterministicPerSeedAndKeepsMasksInteger()
    {
        using var scope = NewDisposeScope();
        var volume = Positions([6, 6, 6]);
        var affine = new RandAffine(Probability: 1, RotateRange: [0.5], ScaleRange: [0.2], TranslateRange: [1], ShearRange: [0.1]);
        var first = affine.Apply(volume, new Random(4));
        Assert.Equal(Floats(first.Image), Floats(affine.Apply(volume, new Random(4)).Image));
        Assert.NotEqual(Floats(first.Image), Floats(affine.Apply(volume, new Random(5)).Image));
        Assert.Equal(ScalarType.Int64, first.Target!.dtype);
        Assert.Subset(new HashSet<long> { 0, 1, 2 }, Longs(first.Target!).ToHashSet());
        // Where a voxel's point lies well inside, its value is the point's value (trilinear is exact on this image).
        var coords = first.Coordinates!;
        var inside = (coords >= 0).all(0).logical_and((coords <= 5).all(0));
        var expected = PositionValue(coords, [6, 6, 6]);
        Assert.True(inside.sum().item<long>() > 50);
        Assert.True((first.Image[0] - expected).abs().masked_select(inside).max().item<float>() < 1e-3);
        Assert.Equal(Floats(volume.Image), Floats(new RandAffine(Probability: 0, RotateRange: [0.5]).Apply(volume, Rng).Image));
    }
}
