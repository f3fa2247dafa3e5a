using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using Xunit.Abstractions;
using static Medformer.Tests.Datasets.TransformSamples;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>The jigsaw objective's permutation sets: what they claim of their Hamming distances.</summary>
public sealed class JigsawPermutationsTests(ITestOutputHelper output)
{

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
}
