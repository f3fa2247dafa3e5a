using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Eval.Metrics;

/// <summary>
/// Image-to-image metrics on one image [H,W] or volume [D,H,W] against its reference, in float64, as
/// scikit-image's skimage.metrics computes them: mean_squared_error, peak_signal_noise_ratio (data range given)
/// and structural_similarity with gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range given
/// (Wang et al. 2004: an 11-wide Gaussian window truncated at 3.5σ, K1 0.01, K2 0.03, the mean over the pixels at
/// least 5 from every border).
/// </summary>
public static class ImageMetrics
{
    public static double Mse(Tensor image, Tensor reference)
    {
        Check(image, reference);
        using var scope = NewDisposeScope();
        return (image.to(ScalarType.Float64) - reference.to(ScalarType.Float64)).square().mean().item<double>();
    }

    /// <summary>10·log10(data_range² / MSE) in dB; +∞ for identical images.</summary>
    public static double Psnr(Tensor image, Tensor reference, double dataRange)
    {
        if (!(dataRange > 0)) throw new ArgumentException($"PSNR: data range {dataRange} must be positive");
        return 10 * Math.Log10(dataRange * dataRange / Mse(image, reference));
    }

    /// <summary>The mean structural similarity, 2D ([H,W]) or 3D ([D,H,W]); every side must be at least 11.</summary>
    public static double Ssim(Tensor image, Tensor reference, double dataRange, double sigma = 1.5)
    {
        Check(image, reference);
        if (!(dataRange > 0)) throw new ArgumentException($"SSIM: data range {dataRange} must be positive");
        int radius = (int)(3.5 * sigma + 0.5);  // SciPy's gaussian_filter radius for skimage's truncate 3.5
        int window = 2 * radius + 1;
        if (image.dim() is not (2 or 3) || image.shape.Any(n => n < window))
            throw new ArgumentException($"SSIM: the image [{string.Join(",", image.shape)}] must be [H,W] or [D,H,W] with every side at least {window} (the Gaussian window)");
        using var scope = NewDisposeScope();
        var x = image.detach().to(ScalarType.Float64).cpu();
        var y = reference.detach().to(ScalarType.Float64).cpu();
        // Only pixels whose whole window lies inside count (skimage crops the border of the window's radius), so a
        // valid convolution gives exactly them, whatever padding skimage used for the border.
        var stacked = stack([x, y, x * x, y * y, x * y]).unsqueeze(1);          // [5,1,…]
        var filtered = GaussianValid(stacked, sigma, radius).squeeze(1);         // [5,…'] local means
        var (ux, uy, uxx, uyy, uxy) = (filtered[0], filtered[1], filtered[2], filtered[3], filtered[4]);
        var vx = uxx - ux * ux;
        var vy = uyy - uy * uy;
        var vxy = uxy - ux * uy;
        double c1 = Math.Pow(0.01 * dataRange, 2), c2 = Math.Pow(0.03 * dataRange, 2);
        var s = (2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
        return s.mean().item<double>();
    }

    /// <summary>Separable Gaussian filtering of [B,1,…] along each spatial axis with no padding (each side shrinks by 2·radius).</summary>
    static Tensor GaussianValid(Tensor input, double sigma, int radius)
    {
        var weights = Enumerable.Range(-radius, 2 * radius + 1).Select(i => Math.Exp(-0.5 * i * i / (sigma * sigma))).ToArray();
        double sum = weights.Sum();
        using var kernel = tensor(weights.Select(w => w / sum).ToArray(), ScalarType.Float64);
        int axes = (int)input.dim() - 2;
        var result = input;
        for (int axis = 0; axis < axes; axis++)
        {
            var shape = Enumerable.Repeat(1L, axes + 2).ToArray();
            shape[2 + axis] = 2 * radius + 1;
            using var k = kernel.reshape(shape);
            var next = axes == 2 ? F.conv2d(result, k) : F.conv3d(result, k);
            if (!ReferenceEquals(result, input)) result.Dispose();
            result = next;
        }
        return result;
    }

    static void Check(Tensor image, Tensor reference)
    {
        if (!image.shape.SequenceEqual(reference.shape))
            throw new ArgumentException($"images differ in shape: [{string.Join(",", image.shape)}] against the reference [{string.Join(",", reference.shape)}]");
        if (image.numel() == 0) throw new ArgumentException("empty image");
    }
}
