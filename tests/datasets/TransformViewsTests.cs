using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Two views with coordinates into their common input, and PixPro's positive pixel pairs.</summary>
public sealed class TransformViewsTests
{
    static readonly Random Rng = new(0);

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void EachViewPixelKnowsTheInputPointItShows(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = axes == 2 ? [28, 28] : [20, 20, 20];
        // Coordinates the input already had are replaced: the views' coordinates are in pixels of this input.
        var input = Positions(shape) with { Coordinates = CoordinateGrid.Identity(shape) + 100 };
        var views = new TwoViews(new Compose([
            new RandResizedCrop([8], MinScale: 0.3), new RandFlip(0.5, [0]), new RandFlip(0.5, [1]), new RandRotate90(0.5),
        ]));
        for (int seed = 0; seed < 10; seed++)
        {
            using var pair = views.Apply(input, new Random(seed));
            foreach (var view in new[] { pair.First, pair.Second })
            {
                Assert.Equal(new long[] { axes }.Concat(Enumerable.Repeat(8L, axes)), view.Coordinates!.shape);
                Assert.True(view.Coordinates!.min().item<float>() >= 0 && view.Coordinates!.max().item<float>() <= shape[0] - 1);
                // Position-valued input, linear resampling of a region larger than the view: value = the point's value.
                Near(Floats(PositionValue(view.Coordinates!, shape)).Select(v => (double)v).ToArray(), view.Image[0], 2e-3);
            }
            Assert.NotEqual(Floats(pair.First.Coordinates!), Floats(pair.Second.Coordinates!));
            using var again = views.Apply(input, new Random(seed));
            Assert.Equal(Floats(pair.Second.Image), Floats(again.Second.Image));
        }
    }

    [Fact]
    public void FeatureGridHoldsTheCellCentres()
    {
        using var scope = NewDisposeScope();
        var grid = PixelPairs.ToFeatureGrid(CoordinateGrid.Identity([4, 4]), [2, 2]);
        Assert.Equal([0.5f, 0.5f, 2.5f, 2.5f, 0.5f, 2.5f, 0.5f, 2.5f], Floats(grid));
        var cube = PixelPairs.ToFeatureGrid(CoordinateGrid.Identity([6, 4, 8]), [3, 2, 2]);
        Assert.Equal([0.5f, 2.5f, 4.5f], Floats(cube[0, .., 0, 0]));
        Assert.Equal([1.5f, 5.5f], Floats(cube[2, 0, 0, ..]));
        Assert.Equal(Math.Sqrt(8), PixelPairs.CellDiagonal(grid), 5);
    }

    [Fact]
    public void PositivePairsOnAHandCheckedCase()
    {
        using var scope = NewDisposeScope();
        // Cells of view 1 at (0,0), (0,2), (2,0), (2,2); of view 2 one pixel right: (0,1), (0,3), (2,1), (2,3).
        var first = tensor(new float[] { 0, 0, 2, 2, 0, 2, 0, 2 }).view(2, 2, 2);
        var second = tensor(new float[] { 0, 0, 2, 2, 1, 3, 1, 3 }).view(2, 2, 2);
        // Distances 1 (neighbours), √5 ≈ 2.24, 3, √13.
        bool[] near =
        [
            true, false, false, false,
            true, true, false, false,
            false, false, true, false,
            false, false, true, true,
        ];
        bool[] wider =
        [
            true, false, true, false,
            true, true, true, true,
            true, false, true, false,
            true, true, true, true,
        ];
        Assert.Equal(near, Bools(PixelPairs.Positive(first, second, 1.5)));
        Assert.Equal(wider, Bools(PixelPairs.Positive(first, second, 2.5)));
        // Strictly closer: at exactly 1 pixel, nothing.
        Assert.All(Bools(PixelPairs.Positive(first, second, 1.0)), Assert.False);
        // In cells (PixPro): both cell diagonals are √8 ≈ 2.83 pixels, so 0.7 → 1.98 pixels and 0.8 → 2.26 pixels.
        Assert.Equal(near, Bools(PixelPairs.Positive(first, second, 0.7, PairDistance.FeatureCells)));
        Assert.Equal(wider, Bools(PixelPairs.Positive(first, second, 0.8, PairDistance.FeatureCells)));
        Assert.Equal([4L, 4], PixelPairs.Positive(first, second, 1.5).shape);
    }

    static bool[] Bools(Tensor t) => t.contiguous().data<bool>().ToArray();

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void PositivePairsAreSymmetricAndTheIdentityForIdenticalViews(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = axes == 2 ? [32, 32] : [16, 16, 16];
        var input = Positions(shape);
        var pipeline = new Compose([new RandResizedCrop([8], MinScale: 0.2), new RandFlip(0.5), new RandAffine(0.5, RotateRange: [0.3])]);
        long[] cells = Enumerable.Repeat(4L, axes).ToArray();
        int positives = 0;
        for (int seed = 0; seed < 8; seed++)
        {
            using var pair = new TwoViews(pipeline).Apply(input, new Random(seed));
            var a = PixelPairs.ToFeatureGrid(pair.First.Coordinates!, cells);
            var b = PixelPairs.ToFeatureGrid(pair.Second.Coordinates!, cells);
            var ab = PixelPairs.Positive(a, b, 0.7, PairDistance.FeatureCells);
            var ba = PixelPairs.Positive(b, a, 0.7, PairDistance.FeatureCells);
            Assert.Equal(Bools(ab), Bools(ba.t()));
            positives += (int)ab.sum().item<long>();
        }
        Assert.True(positives > 0);
        using var same = new TwoViews(new Compose([])).Apply(input, Rng);
        Assert.Equal(Floats(input.Image), Floats(same.First.Image));
        var grid = PixelPairs.ToFeatureGrid(same.First.Coordinates!, cells);
        long n = cells.Aggregate(1L, (p, c) => p * c);
        Assert.Equal(Bools(eye(n, dtype: ScalarType.Bool)), Bools(PixelPairs.Positive(grid, PixelPairs.ToFeatureGrid(same.Second.Coordinates!, cells), 0.5)));
    }
}
