using Medformer.Datasets.Corpora;
using Xunit;

namespace Medformer.Tests.Datasets;

public sealed class FewLabelsTests
{
    // 3 classes of 100, 50 and 7 samples, interleaved.
    static readonly long[] Classes = [.. Enumerable.Range(0, 157).Select(i => i < 150 ? (long)(i % 3 == 2 ? 1 : 0) : 2)];

    static Dictionary<long, int> Counts(int[] picked) => picked.GroupBy(i => Classes[i]).ToDictionary(g => g.Key, g => g.Count());

    [Fact]
    public void AFractionOfEachClassRoundedAndAtLeastOne()
    {
        var picked = FewLabels.Fraction(Classes, 0.1, seed: 3);
        Assert.Equal(new Dictionary<long, int> { [0] = 10, [1] = 5, [2] = 1 }, Counts(picked));
        Assert.Equal(picked.Order(), picked);
        Assert.Equal(picked, FewLabels.Fraction(Classes, 0.1, seed: 3));
        Assert.NotEqual(picked, FewLabels.Fraction(Classes, 0.1, seed: 4));
        Assert.Equal(157, FewLabels.Fraction(Classes, 1.0, seed: 3).Length);
        Assert.Throws<ArgumentException>(() => FewLabels.Fraction(Classes, 0, seed: 3));
    }

    [Fact]
    public void DrawsOfOneSeedNest()
    {
        var small = FewLabels.Fraction(Classes, 0.1, seed: 5);
        var large = FewLabels.Fraction(Classes, 0.5, seed: 5);
        Assert.Subset(large.ToHashSet(), small.ToHashSet());
        var five = FewLabels.PerClass(Classes, 5, seed: 5);
        Assert.Equal(new Dictionary<long, int> { [0] = 5, [1] = 5, [2] = 5 }, Counts(five));
        Assert.Subset(FewLabels.PerClass(Classes, 20, seed: 5).ToHashSet(), five.ToHashSet());
        Assert.Equal(7, Counts(FewLabels.PerClass(Classes, 20, seed: 5))[2]);
    }

    [Fact]
    public void ASplitIsStratifiedAndDisjoint()
    {
        var (half, others) = FewLabels.Split(Classes, 0.5, seed: 1);
        Assert.Empty(half.Intersect(others));
        Assert.Equal(157, half.Length + others.Length);
        Assert.Equal(new Dictionary<long, int> { [0] = 50, [1] = 25, [2] = 4 }, Counts(half));
    }
}
