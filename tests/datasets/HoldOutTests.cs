using Medformer.Datasets.Corpora;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

public sealed class HoldOutTests
{
    static long[] Sources(ICorpus part) => [.. Enumerable.Range(0, (int)part.Count).Select(i =>
    {
        using var sample = part.Get(i);
        return (long)sample.Image[0, 0, 0].item<float>();
    })];

    [Fact]
    public void SplitsEveryCaseIntoOneFixedPart()
    {
        using var corpus = new TensorCorpus("cases", arange(50, dtype: ScalarType.Float32).view(50, 1, 1, 1).expand(50, 1, 2, 2).contiguous());
        var split = HoldOut.Split(corpus);
        long[] train = Sources(split.Train), validation = Sources(split.Validation), test = Sources(split.Test);
        Assert.Equal((35, 5, 10), (train.Length, validation.Length, test.Length));
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), train.Concat(validation).Concat(test).Order());
        Assert.Equal(test, Sources(HoldOut.Split(corpus).Test));            // the same cases every time
        Assert.Equal("cases/test", split.Test.Name);
    }

    [Fact]
    public void SmallCorporaKeepOneCaseInEachPartOrAreRefused()
    {
        using var three = new TensorCorpus("three", zeros(3, 1, 2, 2));
        var split = HoldOut.Split(three);
        Assert.Equal((1L, 1L, 1L), (split.Train.Count, split.Validation.Count, split.Test.Count));
        using var two = new TensorCorpus("two", zeros(2, 1, 2, 2));
        Assert.Contains("'two' has 2 case(s)", Assert.Throws<ArgumentException>(() => HoldOut.Split(two)).Message);
        Assert.Contains("test 0.9", Assert.Throws<ArgumentException>(() => HoldOut.Split(three, 0.2, 0.9)).Message);
    }
}
