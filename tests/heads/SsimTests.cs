using Medformer.Heads;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

public sealed class SsimTests
{
    /// <summary>The test images of the reference numbers: smooth waves, and the same plus a fast ripple (float32).</summary>
    static (Tensor X, Tensor Y) Waves(long[] shape, int channel)
    {
        long count = shape.Aggregate(1L, (a, n) => a * n);
        var x = new float[count];
        var y = new float[count];
        for (long p = 0; p < count; p++)
        {
            long rest = p;
            var index = new double[3];
            for (int a = shape.Length - 1; a >= 0; a--)
            {
                index[a] = rest % shape[a];
                rest /= shape[a];
            }
            double i = index[0], j = index[1], k = shape.Length == 3 ? index[2] : 0;
            double value = 0.5 + 0.4 * Math.Sin(0.37 * i + 0.11 * j + 0.05 * k + channel) * Math.Cos(0.23 * j - 0.17 * k);
            x[p] = (float)value;
            y[p] = (float)(value + 0.2 * Math.Sin(0.9 * i * j + 0.3 * k + 2 * channel));
        }
        return (tensor(x).view(shape), tensor(y).view(shape));
    }

    // tests/reference/ssim.py (Debian's scikit-image 0.19.3, in float64 on these float32 images), its output kept here:
    // structural_similarity(x, y, data_range=R, gaussian_weights=True, sigma=1.5, use_sample_covariance=False[, channel_axis=0])
    [Theory]
    [InlineData(new long[] { 24, 20 }, 1, 1.0, 0.5839528847765659)]
    [InlineData(new long[] { 16, 18 }, 3, 2.0, 0.5734553058067822)]
    [InlineData(new long[] { 12, 14, 13 }, 1, 1.0, 0.653016096913074)]
    public void MatchesScikitImage(long[] shape, int channels, double dataRange, double expected)
    {
        using var scope = NewDisposeScope();
        var pairs = Enumerable.Range(0, channels).Select(c => Waves(shape, c)).ToList();
        var x = stack(pairs.Select(p => p.X)).unsqueeze(0);
        var y = stack(pairs.Select(p => p.Y)).unsqueeze(0);
        Assert.Equal(expected, Ssim.Compute(x, y, dataRange).item<float>(), 4);
        Assert.Equal(expected, Ssim.Compute(x.to(ScalarType.Float64), y.to(ScalarType.Float64), dataRange).item<double>(), 12);
    }

    [Fact]
    public void IsOneForIdenticalImagesPerSampleAndDifferentiable()
    {
        using var scope = NewDisposeScope();
        var (x, y) = Waves([24, 20], 0);
        var batch = stack([x, x]).unsqueeze(1);                   // [2,1,24,20]
        var other = stack([x, y]).unsqueeze(1);
        var perSample = Ssim.PerSample(batch, other, tensor(new float[] { 1, 1 }));
        Assert.Equal(1.0, perSample[0].item<float>(), 5);
        Assert.Equal(0.5839528847765659, perSample[1].item<float>(), 4);

        var input = other.clone().requires_grad_(true);
        var loss = 1 - Ssim.Compute(input, batch, 1.0);
        loss.backward();
        Assert.True(input.grad!.abs().sum().item<float>() > 0);
        Assert.Equal(0, input.grad![0].abs().max().item<float>(), 5);  // the identical pair is at the optimum
    }

    [Fact]
    public void ImagesSmallerThanTheWindowAreClearErrors()
    {
        using var x = rand(1, 1, 10, 20);
        var e = Assert.Throws<ArgumentException>(() => Ssim.Compute(x, x, 1.0));
        Assert.Contains("smaller than the 11-pixel Gaussian window", e.Message);
        using var y = rand(1, 1, 12, 20);
        Assert.Throws<ArgumentException>(() => Ssim.Compute(y, x, 1.0));
    }
}
