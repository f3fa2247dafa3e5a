using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

static class TensorEquality
{
    /// <summary>Same shape, dtype and values (TorchSharp's Tensor.equal gives a tensor, not a bool).</summary>
    public static bool Same(Tensor a, Tensor b)
    {
        if (!a.shape.SequenceEqual(b.shape) || a.dtype != b.dtype) return false;
        using var equal = a.eq(b).all();
        return equal.item<bool>();
    }
}
