using System.Text.RegularExpressions;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

public sealed partial class CheckedTests
{
    public static TheoryData<long[], long[]> Shapes => new()
    {
        { [5], [5] },
        { [3, 5], [5] },
        { [5], [5, 4] },
        { [3, 5], [5, 4] },
        { [2, 3, 5], [5, 4] },
        { [2, 3, 5], [5] },
        { [5], [2, 5, 4] },
        { [2, 3, 5], [2, 5, 4] },
        { [2, 1, 3, 5], [4, 5, 6] },
        { [3, 5], [7, 5, 4] },
    };

    [Theory]
    [MemberData(nameof(Shapes))]
    public void MatmulMatchesLibtorchValuesAndGradients(long[] shapeA, long[] shapeB)
    {
        using var scope = NewDisposeScope();
        var a = randn(shapeA, dtype: ScalarType.Float64).requires_grad_();
        var b = randn(shapeB, dtype: ScalarType.Float64).requires_grad_();
        var ours = Checked.matmul(a, b);
        var reference = a.matmul(b);  // valid arguments: the unchecked native path is safe here
        Assert.Equal(reference.shape, ours.shape);
        Assert.True(ours.allclose(reference, rtol: 1e-12, atol: 1e-12));
        var (ga, gb) = Gradients(ours, a, b);
        var (ra, rb) = Gradients(reference, a, b);
        Assert.True(ga.allclose(ra, rtol: 1e-12, atol: 1e-12));
        Assert.True(gb.allclose(rb, rtol: 1e-12, atol: 1e-12));
    }

    [Fact]
    public void BatchedShapeMismatchIsAnException()
    {
        using var a = ones(2, 3, 5);
        using var b = ones(2, 4, 6);
        var e = Assert.Throws<ArgumentException>(() => Checked.matmul(a, b));
        Assert.Contains("cannot be multiplied (3x5 and 4x6)", e.Message);
        using var s = tensor(1f);
        Assert.Throws<ArgumentException>(() => Checked.matmul(s, a));
    }

    [Fact]
    public void ProjectCodeAvoidsTorchSharpsBrokenCalls()
    {
        // TorchSharp 0.107: THSTensor_matmul lets libtorch errors escape as std::terminate (use Checked.matmul);
        // nn.init.trunc_normal_ swaps mean and std (use Init.trunc_normal_); broadcast_shapes aligns from the left.
        string[] parts = ["runtime", "model", "datasets", "pretrain", "heads", "eval", "tracking", "cli", "bench"];
        var offenders = parts
            .Select(part => Path.Combine(Repo.Root, part))
            .Where(Directory.Exists)
            .SelectMany(dir => Directory.EnumerateFiles(dir, "*.cs", SearchOption.AllDirectories))
            .Where(file => !file.Contains("/bin/") && !file.Contains("/obj/"))
            .Where(file => UncheckedMatmul().IsMatch(File.ReadAllText(file)))
            .Select(file => Path.GetRelativePath(Repo.Root, file))
            .ToList();
        Assert.Empty(offenders);
    }

    [GeneratedRegex(@"(?<!Checked)\.matmul\(|nn\.init\.trunc_normal_\(|broadcast_shapes\(")]
    private static partial Regex UncheckedMatmul();

    static (Tensor, Tensor) Gradients(Tensor output, Tensor a, Tensor b)
    {
        var grads = autograd.grad([output.sum()], [a, b]);
        return (grads[0], grads[1]);
    }
}
