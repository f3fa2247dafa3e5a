using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, a Gaussian blur (MONAI's <c>RandGaussianSmooth</c>), σ drawn per
/// spatial axis uniform in [MinSigma, MaxSigma] (pixels): one 1-D convolution per axis, the kernel sampled and
/// normalised to sum 1, cut at max(Truncated·σ, 0.5) rounded (MONAI's tail), the image edge replicated (so a
/// constant image stays constant). Touches the image only.
/// </summary>
public sealed record RandGaussianSmooth(double Probability = 0.1, double MinSigma = 0.25, double MaxSigma = 1.5, double Truncated = 4.0) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandGaussianSmooth));
        if (!(MinSigma > 0 && MinSigma <= MaxSigma) || double.IsInfinity(MaxSigma) || !(Truncated > 0) || double.IsInfinity(Truncated))
            throw new ArgumentException($"RandGaussianSmooth: needs 0 < MinSigma <= MaxSigma and a positive Truncated, got " +
                $"[{MinSigma}, {MaxSigma}], {Truncated}");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        var sigmas = new double[axes];
        for (int a = 0; a < axes; a++) sigmas[a] = rng.Uniform(MinSigma, MaxSigma);
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Intensity.WithImage(sample, Smooth(sample.Image, sigmas, Truncated)));
    }

    /// <summary>[C,…] blurred with σ per spatial axis (separable, replicate padding): MONAI's GaussianSmooth.</summary>
    public static Tensor Smooth(Tensor image, double[] sigmas, double truncated)
    {
        int axes = sigmas.Length;
        var tails = sigmas.Select(s => (long)(Math.Max(s * truncated, 0.5) + 0.5)).ToArray();
        var pads = new long[2 * axes];
        for (int a = 0; a < axes; a++) pads[2 * (axes - 1 - a)] = pads[2 * (axes - 1 - a) + 1] = tails[a];
        // Channels become the batch, so one single-channel kernel serves them all.
        var x = nn.functional.pad(image.unsqueeze(1), pads, PaddingModes.Replicate);
        for (int a = 0; a < axes; a++)
        {
            var shape = Enumerable.Repeat(1L, axes + 2).ToArray();
            shape[2 + a] = 2 * tails[a] + 1;
            var kernel = Spatial.Floats(Kernel(sigmas[a], tails[a]), shape);
            x = axes == 2 ? nn.functional.conv2d(x, kernel) : nn.functional.conv3d(x, kernel);
        }
        return x.squeeze(1);
    }

    static float[] Kernel(double sigma, long tail)
    {
        var weights = new double[2 * tail + 1];
        for (long i = -tail; i <= tail; i++) weights[i + tail] = Math.Exp(-0.5 * i * i / (sigma * sigma));
        double sum = weights.Sum();
        return weights.Select(w => (float)(w / sum)).ToArray();
    }
}
