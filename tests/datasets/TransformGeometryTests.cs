using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Flips, quarter turns, crops and pads: exact values on hand-made inputs, masks, coordinates, 2D and 3D.</summary>
public sealed class TransformGeometryTests
{
    static readonly Random Rng = new(0);

    static Sample Small2d() => new(arange(6, dtype: ScalarType.Float32).view(1, 2, 3), Meta(2, [2.0, 0.5]), arange(6, dtype: ScalarType.Int64).view(1, 2, 3),
        CoordinateGrid.Identity([2, 3]));

    [Fact]
    public void FlipReversesTheNamedAxes()
    {
        using var scope = NewDisposeScope();
        var sample = Small2d();
        Assert.Equal([2f, 1, 0, 5, 4, 3], Floats(new Flip([1]).Apply(sample, Rng).Image));
        Assert.Equal([3f, 4, 5, 0, 1, 2], Floats(new Flip([0]).Apply(sample, Rng).Image));
        var both = new Flip().Apply(sample, Rng);
        Assert.Equal([5f, 4, 3, 2, 1, 0], Floats(both.Image));
        Assert.Equal([5L, 4, 3, 2, 1, 0], Longs(both.Target!));
        Assert.Equal(ScalarType.Int64, both.Target!.dtype);
        var volume = new Sample(arange(8, dtype: ScalarType.Float32).view(1, 2, 2, 2), Meta(3));
        Assert.Equal([4f, 5, 6, 7, 0, 1, 2, 3], Floats(new Flip([0]).Apply(volume, Rng).Image));
        Assert.Equal([1f, 0, 3, 2, 5, 4, 7, 6], Floats(new Flip([2]).Apply(volume, Rng).Image));
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void FlipsCarryTheCoordinates(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Positions(Shape(axes));
        for (int a = 0; a < axes; a++)
            CoordinatesShowOriginal(sample.Image, new Flip([a]).Apply(sample, Rng));
        CoordinatesShowOriginal(sample.Image, new Flip().Apply(sample, Rng));
    }

    [Fact]
    public void QuarterTurnMatchesRot90AndSwapsTheSpacing()
    {
        using var scope = NewDisposeScope();
        var turned = new Rotate90(1, [0, 1]).Apply(Small2d(), Rng);
        // [[0,1,2],[3,4,5]] turned from the first axis towards the second (counter-clockwise): [[2,5],[1,4],[0,3]].
        Assert.Equal([3L, 2], turned.Image.shape[1..]);
        Assert.Equal([2f, 5, 1, 4, 0, 3], Floats(turned.Image));
        Assert.Equal([2L, 5, 1, 4, 0, 3], Longs(turned.Target!));
        Assert.Equal([0.5, 2.0], turned.Meta.Spacing);
        Assert.Equal([2.0, 0.5], new Rotate90(2).Apply(Small2d(), Rng).Meta.Spacing);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void FourQuarterTurnsAreTheIdentityAndEveryTurnCarriesTheCoordinates(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Positions(Shape(axes), spacing: axes == 2 ? [1.0, 2.0] : [1.0, 2.0, 3.0]);
        foreach (var plane in axes == 2 ? new[] { new[] { 0, 1 } } : [[0, 1], [0, 2], [1, 2]])
        {
            var current = sample;
            for (int i = 0; i < 4; i++)
            {
                current = new Rotate90(1, plane).Apply(current, Rng);
                CoordinatesShowOriginal(sample.Image, current);
                Assert.Equal(Floats(sample.Image.rot90(i + 1, (plane[0] + 1, plane[1] + 1))), Floats(current.Image));
            }
            Assert.Equal(Floats(sample.Image), Floats(current.Image));
            Assert.Equal(Longs(sample.Target!), Longs(current.Target!));
            Assert.Equal(sample.Meta.Spacing, current.Meta.Spacing);
            Assert.Equal(Floats(new Rotate90(-1, plane).Apply(sample, Rng).Image), Floats(new Rotate90(3, plane).Apply(sample, Rng).Image));
        }
    }

    [Fact]
    public void RandRotate90DrawsPlanesAndTurnsAndIsDeterministic()
    {
        using var scope = NewDisposeScope();
        var sample = Positions(Shape(3));
        var shapes = new HashSet<string>();
        for (int seed = 0; seed < 40; seed++)
        {
            var turned = new RandRotate90(Probability: 1).Apply(sample, new Random(seed));
            CoordinatesShowOriginal(sample.Image, turned);
            shapes.Add(string.Join("x", turned.Image.shape));
            Assert.Equal(Floats(turned.Image), Floats(new RandRotate90(Probability: 1).Apply(sample, new Random(seed)).Image));
        }
        // [4,5,6] turned once or thrice in (D,H), (D,W), (H,W), or twice in any: all four arrangements reachable.
        Assert.Equal(new HashSet<string> { "1x4x5x6", "1x5x4x6", "1x6x5x4", "1x4x6x5" }, shapes);
        Assert.Equal(Floats(sample.Image), Floats(new RandRotate90(Probability: 0).Apply(sample, new Random(1)).Image));
    }

    [Fact]
    public void CenterCropStartsWhereMonaiDoes()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([5, 6]);
        var cropped = new CenterSpatialCrop([3]).Apply(sample, Rng);
        // start = n/2 - roi/2: rows 1..3, columns 2..4.
        Assert.Equal([1L, 3, 3], cropped.Image.shape);
        Assert.Equal([8f, 9, 10, 14, 15, 16, 20, 21, 22], Floats(cropped.Image));
        CoordinatesShowOriginal(sample.Image, cropped);
        // Larger than the image, or ≤ 0: the axis stays whole.
        Assert.Equal([1L, 5, 2], new CenterSpatialCrop([9, 2]).Apply(sample, Rng).Image.shape);
        Assert.Equal([1L, 5, 2], new CenterSpatialCrop([-1, 2]).Apply(sample, Rng).Image.shape);
        var volume = Positions([4, 5, 6]);
        var cube = new CenterSpatialCrop([2]).Apply(volume, Rng);
        Assert.Equal([1L, 2, 2, 2], cube.Image.shape);
        CoordinatesShowOriginal(volume.Image, cube);
        Assert.Equal(Floats(volume.Image[.., 1..3, 1..3, 2..4]), Floats(cube.Image));
    }

    [Fact]
    public void PadFillsTheValueMasksWithZeroAndExtendsTheCoordinates()
    {
        using var scope = NewDisposeScope();
        var sample = Small2d();
        var padded = new SpatialPad([4], Value: -1).Apply(sample, Rng);
        // [2,3] → [4,4]: rows 1 before and 1 after, columns 0 before and 1 after.
        Assert.Equal([1L, 4, 4], padded.Image.shape);
        Assert.Equal([-1f, -1, -1, -1, 0, 1, 2, -1, 3, 4, 5, -1, -1, -1, -1, -1], Floats(padded.Image));
        Assert.Equal([0L, 0, 0, 0, 0, 1, 2, 0, 3, 4, 5, 0, 0, 0, 0, 0], Longs(padded.Target!));
        Assert.Equal(ScalarType.Int64, padded.Target!.dtype);
        Assert.Equal([-1f, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2], Floats(padded.Coordinates![0]));
        Assert.Equal([0f, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3], Floats(padded.Coordinates![1]));
        var end = new SpatialPad([3, 4], PadMethod.End, 7).Apply(sample, Rng);
        Assert.Equal([0f, 1, 2, 7, 3, 4, 5, 7, 7, 7, 7, 7], Floats(end.Image));
        // Already large enough: unchanged.
        Assert.Equal(Floats(sample.Image), Floats(new SpatialPad([1, 2]).Apply(sample, Rng).Image));
    }

    [Fact]
    public void PadsA3dVolumeOnEveryAxis()
    {
        using var scope = NewDisposeScope();
        var volume = Positions([2, 3, 4]);
        var padded = new SpatialPad([4, 4, 5]).Apply(volume, Rng);
        Assert.Equal([1L, 4, 4, 5], padded.Image.shape);
        Assert.Equal(Floats(volume.Image), Floats(padded.Image[.., 1..3, 0..3, 0..4]));
        Assert.Equal(0f, padded.Image.sum().item<float>() - volume.Image.sum().item<float>());
        // Coordinates stay the identity, shifted by what was padded before: (-1, 0, 0) at the first voxel.
        Assert.Equal(Floats(CoordinateGrid.Identity([4, 4, 5]) - tensor(new float[] { 1, 0, 0 }).view(3, 1, 1, 1)), Floats(padded.Coordinates!));
    }

    [Fact]
    public void ResizeWithPadOrCropCropsOneAxisAndPadsAnother()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([5, 2]);
        var result = new ResizeWithPadOrCrop([3, 4]).Apply(sample, Rng);
        // Rows 1..3 (start 5/2 - 3/2 = 1), columns padded by 1 each side.
        Assert.Equal([1L, 3, 4], result.Image.shape);
        Assert.Equal([0f, 2, 3, 0, 0, 4, 5, 0, 0, 6, 7, 0], Floats(result.Image));
        Assert.Equal([-1f, 0, 1, 2, -1, 0, 1, 2, -1, 0, 1, 2], Floats(result.Coordinates![1]));
        Assert.Equal([1f, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3], Floats(result.Coordinates![0]));
        var volume = Positions([3, 6, 2]);
        Assert.Equal([1L, 4, 4, 4], new ResizeWithPadOrCrop([4]).Apply(volume, Rng).Image.shape);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void RandSpatialCropCutsTheRoiAtRandomAndCarriesTheCoordinates(int axes)
    {
        using var scope = NewDisposeScope();
        var sample = Positions(Shape(axes));
        var starts = new HashSet<float>();
        for (int seed = 0; seed < 20; seed++)
        {
            var crop = new RandSpatialCrop([3]).Apply(sample, new Random(seed));
            Assert.Equal(Enumerable.Repeat(3L, axes), crop.Image.shape[1..]);
            CoordinatesShowOriginal(sample.Image, crop);
            starts.Add(crop.Image.flatten()[0].item<float>());
            Assert.Equal(Floats(crop.Image), Floats(new RandSpatialCrop([3]).Apply(sample, new Random(seed)).Image));
        }
        Assert.True(starts.Count > 5, $"only {starts.Count} crop positions in 20 draws");
        var center = new RandSpatialCrop([3], RandomCenter: false).Apply(sample, new Random(5));
        Assert.Equal(Floats(new CenterSpatialCrop([3]).Apply(sample, Rng).Image), Floats(center.Image));
        for (int seed = 0; seed < 20; seed++)
        {
            var sized = new RandSpatialCrop([2], MaxRoiSize: [4], RandomSize: true).Apply(sample, new Random(seed));
            Assert.All(sized.Image.shape[1..], n => Assert.InRange(n, 2, 4));
            CoordinatesShowOriginal(sample.Image, sized);
        }
    }

    [Fact]
    public void InputsAreLeftAsTheyWere()
    {
        using var scope = NewDisposeScope();
        var sample = Positions([4, 5]);
        var before = Floats(sample.Image);
        var output = new Compose([new Flip(), new SpatialPad([6]), new CenterSpatialCrop([3])]).Apply(sample, Rng);
        output.Dispose();
        Assert.Equal(before, Floats(sample.Image));
        Assert.Equal(Longs(Positions([4, 5]).Target!), Longs(sample.Target!));
        // Pass-through outputs are new handles: disposing one leaves the input whole.
        new RandFlip(Probability: 0).Apply(sample, Rng).Dispose();
        Assert.Equal(before, Floats(sample.Image));
    }

    [Fact]
    public void BadLayoutsAreRefusedNamingTheSample()
    {
        using var scope = NewDisposeScope();
        var flat = new Sample(zeros(4, 5), Meta(2, source: "flat.npy"));
        var error = Assert.Throws<ArgumentException>(() => new Flip().Apply(flat, Rng));
        Assert.Contains("flat.npy", error.Message);
        var misfit = new Sample(zeros(1, 4, 5), Meta(2, source: "misfit.npy"), zeros([1, 4, 6], dtype: ScalarType.Int64));
        Assert.Contains("misfit.npy", Assert.Throws<ArgumentException>(() => new Flip().Apply(misfit, Rng)).Message);
        var doubles = new Sample(zeros([1, 4, 5], dtype: ScalarType.Float64), Meta(2));
        Assert.Throws<ArgumentException>(() => new SpatialPad([6]).Apply(doubles, Rng));
        Assert.Throws<ArgumentException>(() => new Flip([2]).Apply(Positions([4, 5]), Rng));
        Assert.Throws<ArgumentException>(() => new SpatialPad([3, 3, 3]).Apply(Positions([4, 5]), Rng));
        Assert.Throws<ArgumentException>(() => new Rotate90(1, [1, 1]).Apply(Positions([4, 5]), Rng));
    }
}
