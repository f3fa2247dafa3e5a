using TorchSharp;
using TorchSharp.Modules;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Model;

public sealed class ModelFlopsTests
{
    [Theory]
    [InlineData(new long[] { 28, 28 }, 0L)]
    [InlineData(new long[] { 16, 32 }, 100L)]
    [InlineData(new long[] { 8, 12, 16 }, 0L)]
    [InlineData(new long[] { 28, 28 }, 0L, "conv")]
    [InlineData(new long[] { 8, 12, 16 }, 50L, "conv")]
    public void AnalyticCountMatchesTheLayersThatRan(long[] size, long queries, string stem = "patch")
    {
        var config = MedformerConfig.Tiny with { Repeats = 2, Stem = stem, StemChannels = 8 };
        using var model = new MedformerModel(config);
        double measured = 0;
        // Every Linear and convolution that runs, counted from its real input; attention products from the real shapes.
        foreach (var (_, module) in model.named_modules())
        {
            if (module is Linear linear)
                linear.register_forward_hook((m, input, output) =>
                {
                    measured += 2.0 * input.numel() / input.shape[^1] * linear.in_features * linear.out_features;
                    return output;
                });
            else if (module is Conv2d or Conv3d)
                ((nn.Module<Tensor, Tensor>)module).register_forward_hook((m, input, output) =>
                {
                    var weight = m.named_parameters().First(p => p.name == "weight").parameter;
                    measured += 2.0 * output.numel() * (weight.numel() / weight.shape[0]);
                    return output;
                });
        }
        using var scope = NewDisposeScope();
        long[] shape = [1, 3, .. size];
        var z = model.forward(zeros(shape), [LatentKey.Other]);
        if (queries > 0) model.Decode(z, zeros(1, queries, config.Dim));

        var flops = ModelFlops.Forward(config, size, queries);
        long n = config.LatentCount, t = flops.Tokens, d = config.Dim;
        double attentionProducts = 4.0 * n * t * d + config.Depth * config.Repeats * 4.0 * n * n * d + (queries > 0 ? 4.0 * queries * n * d : 0);
        // The position-query projection is not part of forward(); the analytic count covers forward and decoder only.
        Assert.Equal(measured + attentionProducts, flops.Total, 6);
    }

    [Fact]
    public void RefusesSizesThatAreNotPatchMultiples()
    {
        Assert.Throws<ArgumentException>(() => ModelFlops.Forward(MedformerConfig.Tiny, [30, 28]));
        Assert.Throws<ArgumentException>(() => ModelFlops.Forward(MedformerConfig.Tiny, [28]));
    }
}
