using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using Xunit.Abstractions;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Jigsaw, MAE patch masks and rotation prediction: the labels and what they claim.</summary>
public sealed class TransformPretextTests(ITestOutputHelper output)
{
    static readonly Random Rng = new(0);

    [Theory]
    [InlineData(9, 100)]     // 3×3 tiles (2D), Noroozi and Favaro's set size, from all 9! permutations
    [InlineData(8, 24)]      // 2×2×2 tiles (3D)
    [InlineData(16, 30)]     // 4×4 tiles: from a random pool
    [InlineData(27, 20)]     // 3×3×3 tiles: from a random pool
    public void PermutationSetHasItsClaimedMinimumHammingDistance(int tiles, int count)
    {
        var set = JigsawPermutations.Get(tiles, count);
        Assert.Equal(count, set.Permutations.Count);
        Assert.Equal(Enumerable.Range(0, tiles), set.Permutations[0]);
        foreach (var p in set.Permutations) Assert.Equal(Enumerable.Range(0, tiles), p.Order());
        int minimum = int.MaxValue;
        for (int i = 0; i < count; i++)
            for (int j = i + 1; j < count; j++)
                minimum = Math.Min(minimum, set.Permutations[i].Zip(set.Permutations[j]).Count(z => z.First != z.Second));
        Assert.Equal(minimum, set.MinimumHammingDistance);
        output.WriteLine($"{tiles} tiles, {count} permutations: minimum Hamming distance {minimum}");
        // Far apart: no two closer than half the tiles (a random pair of permutations differs in about n−1 places).
        Assert.True(minimum >= tiles / 2, $"minimum distance {minimum}");
        Assert.Same(set, JigsawPermutations.Get(tiles, count));
    }

    [Fact]
    public void GreedySelectionReachesTheLatinSquareBound()
    {
        // Nine permutations of 9 tiles pairwise at distance 9 are the rows of a Latin square, and any such partial set
        // extends to one (Hall's theorem for Latin rectangles): the greedy max-min choice must find nine. A tenth
        // cannot exist (position 0 holds only nine values).
        var set = JigsawPermutations.Get(9, 9);
        Assert.Equal(9, set.MinimumHammingDistance);
        Assert.Throws<ArgumentException>(() => JigsawPermutations.Get(4, 25));   // 4! = 24
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void JigsawLabelInvertsThePermutation(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = axes == 2 ? [9, 10] : [6, 6, 7];
        var sample = Positions(shape);
        var jigsaw = new Jigsaw(Grid: axes == 2 ? 3 : 2, PermutationCount: axes == 2 ? 100 : 24);
        var labels = new HashSet<int>();
        for (int seed = 0; seed < 12; seed++)
        {
            var (shuffled, label) = jigsaw.Apply(sample, new Random(seed));
            labels.Add(label);
            int[] permutation = jigsaw.Permutations(axes).Permutations[label];
            CoordinatesShowOriginal(sample.Image, shuffled);
            // Undo: tile position i holds original tile permutation[i]; put each back where it came from.
            int grid = jigsaw.Grid;
            long[] tile = shuffled.Image.shape[1..].Select(n => n / grid).ToArray();
            var restored = zeros_like(shuffled.Image);
            for (int i = 0; i < permutation.Length; i++)
                Tile(restored, Index(permutation[i], grid, axes), tile).copy_(Tile(shuffled.Image, Index(i, grid, axes), tile));
            // The centred crop of the original, to whole tiles.
            var start = shape.Select((n, a) => n / 2 - tile[a] * grid / 2).ToArray();
            var original = sample.Image;
            for (int a = 0; a < axes; a++) original = original.narrow(1 + a, start[a], tile[a] * grid);
            Assert.Equal(Floats(original), Floats(restored));
            Assert.Equal(label, jigsaw.Apply(sample, new Random(seed)).Label);
        }
        Assert.True(labels.Count > 6);
    }

    static long[] Index(int flat, int grid, int axes)
    {
        var index = new long[axes];
        for (int a = axes - 1; a >= 0; a--)
        {
            index[a] = flat % grid;
            flat /= grid;
        }
        return index;
    }

    static Tensor Tile(Tensor image, long[] index, long[] tile)
    {
        var view = image;
        for (int a = 0; a < index.Length; a++) view = view.narrow(1 + a, index[a] * tile[a], tile[a]);
        return view;
    }

    [Theory]
    [InlineData(new long[] { 28, 28 }, 4, 0.75, 37)]    // 49 patches: 36.75 → 37
    [InlineData(new long[] { 28, 28 }, 7, 0.5, 8)]      // 16 patches
    [InlineData(new long[] { 16, 16, 16 }, 4, 0.75, 48)]
    [InlineData(new long[] { 8, 12, 16 }, 4, 0.9, 22)]  // 2·3·4 = 24 patches: 21.6 → 22
    [InlineData(new long[] { 8, 8 }, 4, 0.0, 0)]
    [InlineData(new long[] { 8, 8 }, 4, 1.0, 4)]
    public void MaskRatioIsExact(long[] shape, long patch, double ratio, long masked)
    {
        using var scope = NewDisposeScope();
        var masking = new RandPatchMask([patch], ratio);
        for (int seed = 0; seed < 5; seed++)
        {
            var mask = masking.Draw(shape, new Random(seed));
            Assert.Equal(ScalarType.Bool, mask.dtype);
            Assert.Equal(shape.Select(n => n / patch), mask.shape);
            Assert.Equal(masked, mask.sum().item<long>());
        }
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public void MaskOrderIsTheTokenizersPatchOrder(int axes)
    {
        using var scope = NewDisposeScope();
        long[] shape = axes == 2 ? [8, 12] : [8, 4, 12];
        long[] grid = shape.Select(n => n / 4).ToArray();
        // Each pixel holds its patch's row-major index (slowest axis first) — what a stride-4 convolution flattens.
        var patchIndex = CoordinateGrid.Identity(shape).div(4).floor();
        var index = zeros(shape);
        long stride = 1;
        for (int a = axes - 1; a >= 0; a--)
        {
            index = index + patchIndex[a] * stride;
            stride *= grid[a];
        }
        var sample = new Sample(index.unsqueeze(0), Meta(axes));
        var (masked, mask) = new RandPatchMask([4], 0.5, FillValue: -1).Apply(sample, new Random(11));
        var hidden = Longs(mask.flatten().nonzero().flatten());
        var filled = Floats(masked.Image.flatten());
        var original = Floats(sample.Image.flatten());
        var filledPatches = original.Where((v, i) => filled[i] == -1).Select(v => (long)v).Distinct().Order();
        Assert.Equal(hidden, filledPatches);
        Assert.All(filled.Where(v => v != -1).Select(v => (long)v), t => Assert.DoesNotContain(t, hidden));
        // Without a fill value the image passes through untouched.
        var (plain, _) = new RandPatchMask([4], 0.5).Apply(sample, new Random(11));
        Assert.Equal(original, Floats(plain.Image));
        Assert.Throws<ArgumentException>(() => new RandPatchMask([5]).Draw(shape, Rng));
    }

    [Fact]
    public void RotationClassesAreDistinctRotations()
    {
        using var scope = NewDisposeScope();
        var cube = Positions([4, 4, 4]);
        var task = new RotationPrediction();
        Assert.Equal(10, task.ClassCount(3));
        Assert.Equal(4, task.ClassCount(2));
        var images = new Dictionary<int, string>();
        for (int seed = 0; seed < 80; seed++)
        {
            var (rotated, label) = task.Apply(cube, new Random(seed));
            CoordinatesShowOriginal(cube.Image, rotated);
            var (k, plane) = task.Rotation(label, 3);
            Assert.Equal(Floats(new Rotate90(k, plane).Apply(cube, Rng).Image), Floats(rotated.Image));
            images[label] = string.Join(",", Floats(rotated.Image));
        }
        Assert.Equal(10, images.Count);
        Assert.Equal(10, images.Values.Distinct().Count());
        var square = Positions([5, 5]);
        var seen = new HashSet<string>();
        for (int label = 0; label < 4; label++)
        {
            var (k, plane) = task.Rotation(label, 2);
            seen.Add(string.Join(",", Floats(new Rotate90(k, plane).Apply(square, Rng).Image)));
        }
        Assert.Equal(4, seen.Count);
    }
}
