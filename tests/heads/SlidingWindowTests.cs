using System.Text.Json;
using Medformer.Heads;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Heads;

public sealed class SlidingWindowTests
{
    /// <summary>A position-equivariant predictor: each output pixel a function of its input pixel alone, two channels.</summary>
    static Tensor Pointwise(Tensor x) => cat([x.sigmoid(), x.square() - x], dim: 1);

    [Theory]
    [InlineData(BlendMode.Gaussian, 1)]
    [InlineData(BlendMode.Gaussian, 3)]
    [InlineData(BlendMode.Constant, 2)]
    public void EqualsWholeImageInferenceForAPointwisePredictor2d(BlendMode mode, int batch)
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(1);
        var x = randn(2, 1, 37, 29);
        var windows = SlidingWindow.Infer(x, [16, 12], Pointwise, new SlidingWindowOptions(Mode: mode, BatchSize: batch));
        Assert.Equal([2L, 2, 37, 29], windows.shape);
        Assert.True(windows.allclose(Pointwise(x), rtol: 1e-5, atol: 1e-5), $"max difference {(windows - Pointwise(x)).abs().max().item<float>()}");
    }

    [Fact]
    public void EqualsWholeVolumeInferenceIn3dWithPaddingAlongAShortAxis()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(2);
        var x = randn([1, 2, 6, 17, 19]);                                  // D = 6 < the window's 8: padded, then cropped
        var windows = SlidingWindow.Infer(x, [8, 8, 8], Pointwise, new SlidingWindowOptions(BatchSize: 4));
        Assert.Equal([1L, 4, 6, 17, 19], windows.shape);
        Assert.True(windows.allclose(Pointwise(x), rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void AFinerOutputGridIsBlendedOnThatGrid()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(3);
        var x = randn(1, 1, 20, 14);
        Tensor Upsampled(Tensor t) => F.interpolate(Pointwise(t), [t.shape[2] * 2, t.shape[3] * 2], mode: InterpolationMode.Nearest);
        var windows = SlidingWindow.Infer(x, [8, 8], Upsampled, new SlidingWindowOptions(BatchSize: 2));
        Assert.Equal([1L, 2, 40, 28], windows.shape);
        Assert.True(windows.allclose(Upsampled(x), rtol: 1e-5, atol: 1e-5));
    }

    [Fact]
    public void MatchesTheMonaiTwinOnAPositionDependentPredictor()
    {
        // The twin (bench/reference/sliding_window.py) writes out MONAI's sliding_window_inference; its predictor
        // depends on where a pixel sits in its window, so window placement, weights and padding all show.
        var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "bench", "reference", "sliding_window.py"), "--parity"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        using var json = JsonDocument.Parse(result.Stdout.Trim().Split('\n')[^1]);
        using var scope = NewDisposeScope();
        var x = arange(2 * 13 * 11, dtype: ScalarType.Float32).reshape(2, 1, 13, 11);
        x = x.mul(0.37).sin() + x * 0.01;
        static Tensor Predictor(Tensor w)
        {
            var ramp = arange(w.shape[2], dtype: ScalarType.Float32).unsqueeze(1) * 0.1 + arange(w.shape[3], dtype: ScalarType.Float32).unsqueeze(0) * 0.03;
            return cat([w * (1 + ramp), w.square() - ramp], dim: 1);
        }
        Compare("gaussian", SlidingWindow.Infer(x, [8, 6], Predictor, new SlidingWindowOptions(BatchSize: 3)));
        Compare("constant", SlidingWindow.Infer(x, [8, 6], Predictor, new SlidingWindowOptions(Overlap: 0.5, Mode: BlendMode.Constant, BatchSize: 2)));
        Compare("padded", SlidingWindow.Infer(x.narrow(2, 0, 5), [8, 6], Predictor, new SlidingWindowOptions(BatchSize: 4)));

        void Compare(string name, Tensor ours)
        {
            var theirs = json.RootElement.GetProperty(name).EnumerateArray().Select(v => v.GetSingle()).ToArray();
            var values = ours.flatten().data<float>().ToArray();
            Assert.Equal(theirs.Length, values.Length);
            for (int i = 0; i < values.Length; i++) Assert.True(Math.Abs(values[i] - theirs[i]) < 1e-4, $"{name}[{i}]: {values[i]} vs MONAI's {theirs[i]}");
        }
    }

    [Fact]
    public void WindowsStartAsMonaisDensePatchSlices()
    {
        Assert.Equal([[0L], [3], [6]], SlidingWindow.Origins([10], [4], 0.25));
        Assert.Equal([0L, 24, 48, 72, 96], SlidingWindow.Origins([128], [32], 0.25).Select(o => o[0]));
        Assert.Equal([[0L, 0]], SlidingWindow.Origins([5, 7], [5, 7], 0.25));
        Assert.Equal(125, SlidingWindow.Origins([128, 128, 128], [32, 32, 32], 0.25).Count);
        Assert.Equal([0L, 1, 2, 3], SlidingWindow.Origins([5], [2], 0.9).Select(o => o[0]));   // interval int(0.2) = 0 → 1
    }

    [Fact]
    public void TheGaussianMapPeaksAtOneInTheCentreAndIsFloored()
    {
        using var map = SlidingWindow.ImportanceMap([9, 7], BlendMode.Gaussian);
        Assert.Equal(1f, map[4, 3].item<float>(), 6);
        Assert.Equal(map.max().item<float>(), map[4, 3].item<float>());
        Assert.Equal(Math.Exp(-4 / (2 * 1.125 * 1.125)) * Math.Exp(-1 / (2 * 0.875 * 0.875)), map[2, 2].item<float>(), 6);
        Assert.Equal(1e-3f, map[0, 0].item<float>(), 6);   // exp(−6.3)·exp(−5.9) lies below MONAI's floor
        using var sharp = SlidingWindow.ImportanceMap([64], BlendMode.Gaussian, sigmaScale: 0.01);
        Assert.Equal(1e-3f, sharp.min().item<float>(), 6);
        using var constant = SlidingWindow.ImportanceMap([4, 4, 4], BlendMode.Constant);
        Assert.Equal(64f, constant.sum().item<float>());
    }

    [Fact]
    public void BadArgumentsAreClearErrors()
    {
        using var x = zeros(1, 1, 8, 8);
        Assert.Contains("roi [4]", Assert.Throws<ArgumentException>(() => SlidingWindow.Infer(x, [4], Pointwise)).Message);
        Assert.Contains("overlap 1", Assert.Throws<ArgumentException>(() => SlidingWindow.Infer(x, [4, 4], Pointwise,
            new SlidingWindowOptions(Overlap: 1))).Message);
        Assert.Contains("the predictor returned", Assert.Throws<InvalidOperationException>(() => SlidingWindow.Infer(x, [4, 4], w => w.flatten(1))).Message);
    }
}
