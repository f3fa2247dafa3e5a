using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>
/// The structural similarity index (Wang et al., 2004), differentiable, 2D and 3D, with the numbers of
/// <c>skimage.metrics.structural_similarity(x, y, data_range=R, gaussian_weights=True, sigma=1.5,
/// use_sample_covariance=False, channel_axis=…)</c>: local means, variances and covariance under a Gaussian window
/// (σ 1.5, cut at 3.5σ: 11 wide), C1 = (K1·R)², C2 = (K2·R)², the SSIM map averaged over the pixels whose whole
/// window lies inside the image (skimage crops (window − 1)/2 from every border), then over channels.
/// Computed in fp32 (fp64 inputs stay fp64); a loss is 1 − SSIM.
/// </summary>
public static class Ssim
{
    /// <summary>The mean SSIM of a batch: x, y [B,C,H,W] or [B,C,D,H,W]; a scalar tensor.</summary>
    public static Tensor Compute(Tensor x, Tensor y, double dataRange, double sigma = 1.5, double k1 = 0.01, double k2 = 0.03, double truncate = 3.5)
    {
        using var scope = NewDisposeScope();
        var range = full(x.shape[0], dataRange, dtype: Precision(x), device: x.device);
        return scope.MoveToOuter(PerSample(x, y, range, sigma, k1, k2, truncate).mean());
    }

    /// <summary>
    /// SSIM per sample [B] (each the mean over its channels), with a data range per sample [B] (the spread the
    /// values can take: 1 for images in [0, 1], or the target's max − min).
    /// </summary>
    public static Tensor PerSample(Tensor x, Tensor y, Tensor dataRange, double sigma = 1.5, double k1 = 0.01, double k2 = 0.03, double truncate = 3.5)
    {
        if (x.dim() is not (4 or 5) || !x.shape.SequenceEqual(y.shape))
            throw new ArgumentException($"SSIM compares two images of one shape [B,C,H,W] or [B,C,D,H,W], not " +
                $"[{string.Join(",", x.shape)}] and [{string.Join(",", y.shape)}]");
        if (!(sigma > 0) || !(truncate > 0)) throw new ArgumentException($"SSIM: sigma {sigma} and truncate {truncate} must be positive");
        int axes = (int)x.dim() - 2;
        long radius = (long)(truncate * sigma + 0.5), window = 2 * radius + 1;
        if (x.shape[2..].Any(n => n < window))
            throw new ArgumentException($"SSIM: the image [{string.Join(",", x.shape[2..])}] is smaller than the {window}-pixel " +
                $"Gaussian window (σ {sigma}) along some axis");
        if (dataRange.dim() != 1 || dataRange.shape[0] != x.shape[0])
            throw new ArgumentException($"SSIM: the data range must be one value per sample [{x.shape[0]}], not [{string.Join(",", dataRange.shape)}]");

        using var scope = NewDisposeScope();
        var dtype = Precision(x);
        long b = x.shape[0], c = x.shape[1];
        x = x.to(dtype);
        y = y.to(dtype);
        // The five local moments of every channel as one batch of single-channel images, filtered once.
        var moments = stack([x, y, x * x, y * y, x * y], dim: 2).reshape([b * c * 5, 1, .. x.shape[2..]]);
        var filtered = Filter(moments, Kernel(sigma, radius, dtype, x.device), axes).reshape([b, c, 5, .. FilteredShape(x.shape[2..], radius)]);
        var (ux, uy) = (filtered.select(2, 0), filtered.select(2, 1));
        var vx = filtered.select(2, 2) - ux * ux;
        var vy = filtered.select(2, 3) - uy * uy;
        var vxy = filtered.select(2, 4) - ux * uy;
        var shape = new long[axes + 2];
        Array.Fill(shape, 1L);
        shape[0] = b;
        var range = dataRange.to(dtype).to(x.device).view(shape);
        var c1 = (range * k1).square();
        var c2 = (range * k2).square();
        var map = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        return scope.MoveToOuter(map.flatten(1).mean([1]));
    }

    static ScalarType Precision(Tensor x) => x.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;

    static long[] FilteredShape(long[] spatial, long radius) => spatial.Select(n => n - 2 * radius).ToArray();

    /// <summary>The sampled Gaussian, normalised to sum 1 (scipy.ndimage.gaussian_filter1d's weights).</summary>
    static Tensor Kernel(double sigma, long radius, ScalarType dtype, Device device)
    {
        var weights = new double[2 * radius + 1];
        for (long i = -radius; i <= radius; i++) weights[i + radius] = Math.Exp(-0.5 * i * i / (sigma * sigma));
        double sum = weights.Sum();
        return tensor(weights.Select(w => w / sum).ToArray(), dtype: dtype, device: device);
    }

    /// <summary>A separable filter over every spatial axis with no padding: only the pixels skimage keeps.</summary>
    static Tensor Filter(Tensor images, Tensor kernel, int axes)
    {
        var x = images;
        for (int a = 0; a < axes; a++)
        {
            var shape = Enumerable.Repeat(1L, axes + 2).ToArray();
            shape[2 + a] = kernel.shape[0];
            var weight = kernel.view(shape);
            x = axes == 2 ? F.conv2d(x, weight) : F.conv3d(x, weight);
        }
        return x;
    }
}
