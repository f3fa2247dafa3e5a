using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>A libtorch error is a C# exception carrying libtorch's message, and the process goes on.</summary>
public sealed class LibtorchErrorTests
{
    [Fact]
    public void MatmulShapeMismatch()
    {
        using var a = ones(2, 3);
        using var b = ones(4, 5);
        var e = Assert.ThrowsAny<Exception>(() => a.mm(b));
        Assert.Contains("cannot be multiplied", e.Message);
        e = Assert.ThrowsAny<Exception>(() => Checked.matmul(a, b));
        Assert.Contains("cannot be multiplied", e.Message);
        StillWorks();
    }

    [Fact]
    public void IndexOutOfRange()
    {
        using var a = arange(5);
        using var index = tensor(new long[] { 7 });
        var e = Assert.ThrowsAny<Exception>(() => a.index_select(0, index));
        Assert.Contains("out of range", e.Message, StringComparison.OrdinalIgnoreCase);
        StillWorks();
    }

    [Fact]
    public void DtypeClash()
    {
        using var a = ones(3, 3, ScalarType.Float32);
        using var b = ones(3, 3, ScalarType.Float64);
        // Through Checked.matmul: TorchSharp's own Tensor.matmul would terminate the process here (no try/catch).
        var e = Assert.ThrowsAny<Exception>(() => Checked.matmul(a, b));
        Assert.Matches("dtype|scalar type", e.Message);
        using var batch = ones(2, 3, 3, ScalarType.Float32);
        e = Assert.ThrowsAny<Exception>(() => Checked.matmul(batch, b.expand(2, 3, 3)));
        Assert.Matches("dtype|scalar type", e.Message);
        StillWorks();
    }

    [Fact]
    public void BackwardThroughNonScalarWithoutGradient()
    {
        using var x = ones(new long[] { 3 }, requires_grad: true);
        using var y = x * 2;
        var e = Assert.ThrowsAny<Exception>(() => y.backward());
        Assert.Contains("scalar", e.Message, StringComparison.OrdinalIgnoreCase);
        StillWorks();
    }

    static void StillWorks()
    {
        using var a = ones(2, 2);
        using var c = a.matmul(a);
        Assert.Equal(2f, c[1, 1].item<float>());
    }
}
