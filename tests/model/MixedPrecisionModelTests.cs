using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Model;

public sealed class MixedPrecisionModelTests
{
    [Fact]
    public void TheWholeModelTrainsInBf16()
    {
        Seeding.SeedEverything(9);
        using var reference = new MedformerModel(MedformerConfig.Tiny);
        using var model = new MedformerModel(MedformerConfig.Tiny);
        model.load_state_dict(reference.state_dict());
        using var policy = MixedPrecision.Create(model, Precision.Bf16, CPU, cpuHasFastBf16: true);
        Assert.Equal(ScalarType.BFloat16, model.named_parameters().First(p => p.name == "latents.organ.chest").parameter.dtype);
        Assert.Equal(ScalarType.Float32, model.named_parameters().First(p => p.name == "ln_f.weight").parameter.dtype);

        LatentKey[] keys = [new("chest", "xray", "rotation"), new("brain", "mri", "rotation")];
        using var x = randn(2, 1, 16, 16);
        using (var scope = NewDisposeScope())
        {
            var expected = reference.forward(x, keys);
            var actual = model.forward(policy.Cast(x), keys);
            Assert.Equal(ScalarType.BFloat16, actual.dtype);
            double error = (actual.to(ScalarType.Float32) - expected).abs().max().item<float>() / expected.abs().max().item<float>();
            Assert.True(error < 5e-2, $"bf16 latents differ from fp32 by {error:E2} (relative)");
        }

        using var optimizer = optim.AdamW(policy.MasterParameters, lr: 1e-3);
        using var target = randn(2, MedformerConfig.Tiny.LatentCount, MedformerConfig.Tiny.Dim);
        var losses = new List<float>();
        for (int step = 0; step < 15; step++)
        {
            using var scope = NewDisposeScope();
            var loss = MixedPrecision.Loss(model.forward(policy.Cast(x), keys), target, (o, t) => F.mse_loss(o, t));
            losses.Add(loss.item<float>());
            policy.Backward(loss);
            Assert.True(policy.Step(optimizer));
            policy.ZeroGrad(optimizer);
        }
        Assert.True(losses[^1] < losses[0], $"loss {losses[0]} → {losses[^1]}");
        // Banks the batch never selected were not moved.
        var untouched = model.named_parameters().First(p => p.name == "latents.organ.kidney").parameter.to(ScalarType.Float32);
        var original = reference.named_parameters().First(p => p.name == "latents.organ.kidney").parameter.to(ScalarType.BFloat16).to(ScalarType.Float32);
        Assert.True(untouched.equal(original).all().item<bool>());
    }
}
