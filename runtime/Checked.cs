using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// Ops whose TorchSharp 0.107 native wrappers do not catch libtorch errors: a bad argument there is a
/// <c>std::terminate</c> that kills the process instead of an exception. These versions build the same result
/// from wrapped ops, so an error surfaces as a C# exception with libtorch's message.
/// </summary>
public static class Checked
{
    /// <summary>
    /// <c>torch.matmul</c> (THSTensor_matmul has no try/catch): dot, mv, mm or a broadcast bmm, as PyTorch picks.
    /// </summary>
    public static Tensor matmul(Tensor a, Tensor b)
    {
        if (a.dim() == 0 || b.dim() == 0)
            throw new ArgumentException($"both arguments to matmul need to be at least 1D, but they are {a.dim()}D and {b.dim()}D");
        if (a.dim() == 1 && b.dim() == 1) return a.dot(b);
        if (a.dim() == 2 && b.dim() == 1) return a.mv(b);
        if (a.dim() == 1 && b.dim() == 2)
        {
            using var row = a.unsqueeze(0);
            using var product = row.mm(b);
            return product.squeeze(0);
        }
        if (a.dim() == 2 && b.dim() == 2) return a.mm(b);
        if (b.dim() <= 2)
        {
            // [..., n, k] @ [k, m] (or [k]): fold the batch into rows, one mm.
            long n = a.shape[^1];
            using var rows = a.reshape(-1, n);
            using var product = b.dim() == 2 ? rows.mm(b) : rows.mv(b);
            long[] shape = b.dim() == 2 ? [.. a.shape[..^1], b.shape[1]] : a.shape[..^1];
            return product.reshape(shape);
        }
        return BatchedMatmul(a, b);
    }

    static Tensor BatchedMatmul(Tensor a, Tensor b)
    {
        using var scope = NewDisposeScope();
        bool vectorLeft = a.dim() == 1;
        Tensor left = vectorLeft ? a.unsqueeze(0) : a;
        long[] batchA = left.shape[..^2], batchB = b.shape[..^2];
        long[] batch = BroadcastShapes(batchA, batchB);
        long n = left.shape[^2], k = left.shape[^1], m = b.shape[^1];
        if (b.shape[^2] != k)
            throw new ArgumentException($"matmul: mat1 and mat2 shapes cannot be multiplied ({n}x{k} and {b.shape[^2]}x{m})");
        long count = batch.Aggregate(1L, (x, y) => x * y);
        Tensor l = left.expand([.. batch, n, k]).reshape(count, n, k);
        Tensor r = b.expand([.. batch, k, m]).reshape(count, k, m);
        Tensor product = l.bmm(r).reshape([.. batch, n, m]);
        if (vectorLeft) product = product.squeeze(-2);
        return scope.MoveToOuter(product);
    }

    // Aligned from the right, as PyTorch broadcasts (TorchSharp 0.107's torch.broadcast_shapes aligns from the left).
    static long[] BroadcastShapes(long[] x, long[] y)
    {
        var result = new long[Math.Max(x.Length, y.Length)];
        for (int i = 1; i <= result.Length; i++)
        {
            long dx = i <= x.Length ? x[^i] : 1, dy = i <= y.Length ? y[^i] : 1;
            if (dx != dy && dx != 1 && dy != 1)
                throw new ArgumentException($"matmul: batch dimensions [{string.Join(", ", x)}] and [{string.Join(", ", y)}] cannot be broadcast together");
            result[^i] = dx == 1 ? dy : dx;
        }
        return result;
    }
}
