using static TorchSharp.torch;

namespace Medformer.Eval.Metrics;

/// <summary>
/// Image-to-image metrics on one image [H,W] or volume [D,H,W] against its reference, in float64, as
/// scikit-image's skimage.metrics computes them: mean_squared_error, peak_signal_noise_ratio (data range given)
/// and structural_similarity (heads' Ssim) with gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range given
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

    /// <summary>The mean structural similarity, 2D ([H,W]) or 3D ([D,H,W]), by heads' differentiable <see cref="Heads.Ssim"/> in float64; every side must be at
    /// least 11.</summary>
    public static double Ssim(Tensor image, Tensor reference, double dataRange, double sigma = 1.5)
    {
        Check(image, reference);
        if (!(dataRange > 0)) throw new ArgumentException($"SSIM: data range {dataRange} must be positive");
        if (image.dim() is not (2 or 3)) throw new ArgumentException($"SSIM: the image [{string.Join(",", image.shape)}] must be [H,W] or [D,H,W]");
        using var scope = NewDisposeScope();
        var x = image.detach().to(ScalarType.Float64).cpu().unsqueeze(0).unsqueeze(0);
        var y = reference.detach().to(ScalarType.Float64).cpu().unsqueeze(0).unsqueeze(0);
        return Heads.Ssim.Compute(x, y, dataRange, sigma).item<double>();
    }

    static void Check(Tensor image, Tensor reference)
    {
        if (!image.shape.SequenceEqual(reference.shape))
            throw new ArgumentException($"images differ in shape: [{string.Join(",", image.shape)}] against the reference " +
                $"[{string.Join(",", reference.shape)}]");
        if (image.numel() == 0) throw new ArgumentException("empty image");
    }
}
