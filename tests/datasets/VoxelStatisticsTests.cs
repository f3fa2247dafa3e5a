using Medformer.Datasets.Formats;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Statistics streamed over slabs agree with torch's over the whole tensor in float64.</summary>
public sealed class VoxelStatisticsTests
{
    [Theory]
    [InlineData(ScalarType.Float32, 7)]
    [InlineData(ScalarType.Int16, 64)]
    [InlineData(ScalarType.Byte, 1000)]
    [InlineData(ScalarType.Float64, 1 << 22)]
    public void SlabsAgreeWithTheWholeTensor(ScalarType dtype, long slab)
    {
        using var scope = NewDisposeScope();
        manual_seed(1);
        var values = (randn(3, 17, 19) * 40 + 1000).to(dtype);  // an offset mean: a naive sum of squares would cancel
        var wide = values.to(ScalarType.Float64);
        var stats = VoxelStatistics.Of(values, slab);
        Assert.Equal(wide.min().item<double>(), stats.Min);
        Assert.Equal(wide.max().item<double>(), stats.Max);
        Assert.Equal(wide.mean().item<double>(), stats.Mean, 9);
        Assert.Equal(wide.std().item<double>(), stats.Std, 9);
        Assert.Equal(wide.sum().item<double>(), stats.Sum, 6);
        Assert.Equal(wide.count_nonzero().item<long>(), stats.NonZero);
    }

    [Fact]
    public void EmptySingleAndNaN()
    {
        using var scope = NewDisposeScope();
        var empty = VoxelStatistics.Of(zeros(0, 4));
        Assert.True(double.IsNaN(empty.Min) && double.IsNaN(empty.Std));
        Assert.Equal(0, empty.Sum);
        var single = VoxelStatistics.Of(tensor(new[] { 3f }));
        Assert.Equal(3, single.Mean);
        Assert.True(double.IsNaN(single.Std));
        var nan = VoxelStatistics.Of(tensor(new[] { 1f, float.NaN, 2f, 0f }), slabLength: 2);
        Assert.True(double.IsNaN(nan.Min) && double.IsNaN(nan.Max) && double.IsNaN(nan.Mean));
        Assert.Equal(3, nan.NonZero);
    }
}
