using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// Initialisers TorchSharp 0.107 gets wrong. Its native <c>trunc_normal_</c> multiplies by the mean and adds the
/// standard deviation (the two are swapped), so with mean 0 every element becomes the constant <c>std</c>.
/// </summary>
public static class Init
{
    /// <summary>PyTorch's <c>nn.init.trunc_normal_</c>: N(mean, std²) truncated to [a, b], by inverse-CDF sampling.</summary>
    public static Tensor trunc_normal_(Tensor tensor, double mean = 0.0, double std = 1.0, double a = -2.0, double b = 2.0, Generator? generator = null)
    {
        if (std <= 0) throw new ArgumentOutOfRangeException(nameof(std), std, "trunc_normal_: std must be positive");
        if (a >= b) throw new ArgumentException($"trunc_normal_: a ({a}) must be below b ({b})");
        double lower = NormalCdf((a - mean) / std), upper = NormalCdf((b - mean) / std);
        using var noGrad = torch.no_grad();
        tensor.uniform_(2 * lower - 1, 2 * upper - 1, generator);
        tensor.erfinv_();
        tensor.mul_(std * Math.Sqrt(2.0));
        tensor.add_(mean);
        tensor.clamp_(a, b);
        return tensor;
    }

    /// <summary>
    /// The transformer initialisation of every Linear in <paramref name="module"/> (ViT, MAE, Perceiver): weights from
    /// a normal of std 0.02 truncated at ±2, zero biases, in <c>named_modules()</c> order (the draws are reproducible).
    /// </summary>
    public static void TruncatedNormalLinears(nn.Module module, double std = 0.02)
    {
        using var noGrad = torch.no_grad();
        foreach (var (_, child) in module.named_modules())
            if (child is TorchSharp.Modules.Linear linear) TruncatedNormalLinear(linear, std);
    }

    /// <summary>One Linear: truncated-normal weight, zero bias.</summary>
    public static void TruncatedNormalLinear(TorchSharp.Modules.Linear linear, double std = 0.02)
    {
        using var noGrad = torch.no_grad();
        trunc_normal_(linear.weight!, std: std);
        if (linear.bias is not null) nn.init.zeros_(linear.bias);
    }

    /// <summary>A learned array (latents, queries) drawn as the weights are: truncated normal, std 0.02 unless given.</summary>
    public static TorchSharp.Modules.Parameter TruncatedNormalParameter(long[] shape, double std = 0.02)
    {
        using var noGrad = torch.no_grad();
        var values = empty(shape);
        trunc_normal_(values, std: std);
        return new TorchSharp.Modules.Parameter(values);
    }

    static double NormalCdf(double x) => (1.0 + Erf(x / Math.Sqrt(2.0))) / 2.0;

    static double Erf(double x)
    {
        // .NET has no Math.Erf; libtorch's double-precision erf on a scalar is exact to the last bit.
        using var t = torch.tensor(x, dtype: ScalarType.Float64);
        using var e = t.erf();
        return e.item<double>();
    }
}
