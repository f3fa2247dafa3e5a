using Medformer.Bench;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Runtime;

public sealed class PrecisionTests
{
    static readonly Device Cpu = CPU;

    [Theory]
    [InlineData("fp32", Precision.Fp32)]
    [InlineData("BF16", Precision.Bf16)]
    [InlineData("16-mixed", Precision.Fp16)]
    public void ParsesTheFlag(string text, Precision expected) => Assert.Equal(expected, PrecisionNames.Parse(text));

    [Fact]
    public void RefusesAnUnknownPrecision()
    {
        var e = Assert.Throws<ArgumentException>(() => PrecisionNames.Parse("fp8"));
        Assert.Contains("--precision 'fp8'", e.Message);
    }

    [Fact]
    public void Bf16OutputsAndGradientsAgreeWithFp32()
    {
        Seeding.SeedEverything(2);
        using var reference = new TransformerBlock(64, 4);
        using var mixed = new TransformerBlock(64, 4);
        mixed.load_state_dict(reference.state_dict());
        using var policy = MixedPrecision.Create(mixed, Precision.Bf16, Cpu, cpuHasFastBf16: true);
        using var scope = NewDisposeScope();
        var x = randn(8, 16, 64);
        var target = randn(8, 16, 64);

        var expected = reference.call(x);
        F.mse_loss(expected, target).backward();
        var actual = mixed.call(policy.Cast(x));
        Assert.Equal(ScalarType.BFloat16, actual.dtype);
        policy.Backward(MixedPrecision.Loss(actual, target, (o, t) => F.mse_loss(o, t)));
        Assert.True(policy.UnscaleGradients());

        double outputError = (actual.to(ScalarType.Float32) - expected).abs().max().item<float>() / expected.abs().max().item<float>();
        Assert.True(outputError < 2e-2, $"bf16 output differs from fp32 by {outputError:E2} (relative)");
        var referenceGrads = reference.parameters().Select(p => p.grad!).ToList();
        var masterGrads = policy.MasterParameters.Select(p => p.grad!).ToList();
        Assert.Equal(referenceGrads.Count, masterGrads.Count);
        for (int i = 0; i < referenceGrads.Count; i++)
        {
            Assert.Equal(ScalarType.Float32, masterGrads[i].dtype);
            double cosine = F.cosine_similarity(referenceGrads[i].flatten(), masterGrads[i].flatten(), dim: 0).item<float>();
            Assert.True(cosine > 0.99, $"gradient {i}: cosine {cosine:F4} with fp32");
        }
    }

    [Fact]
    public void MastersStayFp32AndNormsStayFp32()
    {
        using var block = new TransformerBlock(32, 2);
        using var policy = MixedPrecision.Create(block, Precision.Bf16, Cpu, cpuHasFastBf16: true);
        using var optimizer = optim.AdamW(policy.MasterParameters, lr: 1e-3);
        for (int step = 0; step < 3; step++)
        {
            using var scope = NewDisposeScope();
            var x = randn(4, 8, 32);
            policy.Backward(MixedPrecision.Loss(block.call(policy.Cast(x)), x, (o, t) => F.mse_loss(o, t)));
            Assert.True(policy.Step(optimizer));
            policy.ZeroGrad(optimizer);
        }
        Assert.All(policy.MasterParameters, p => Assert.Equal(ScalarType.Float32, p.dtype));
        foreach (var (name, parameter) in block.named_parameters())
            Assert.Equal(name.StartsWith("ln_", StringComparison.Ordinal) ? ScalarType.Float32 : ScalarType.BFloat16, parameter.dtype);
        // The model's low-precision copies follow the masters after each step.
        var pairs = block.named_parameters().Zip(policy.MasterParameters);
        foreach (var ((name, parameter), master) in pairs)
        {
            if (parameter.dtype == ScalarType.Float32)
                Assert.Equal(parameter.Handle, master.Handle);  // norms: the optimizer updates them directly
            else
                Assert.True(parameter.to(ScalarType.Float32).allclose(master.to(ScalarType.BFloat16).to(ScalarType.Float32)), name);
        }
    }

    [Fact]
    public void Bf16TrainingTracksFp32()
    {
        double[] Train(Precision precision)
        {
            Seeding.SeedEverything(4);
            using var block = new TransformerBlock(32, 2);
            using var policy = MixedPrecision.Create(block, precision, Cpu, cpuHasFastBf16: true);
            using var optimizer = optim.AdamW(policy.MasterParameters, lr: 3e-3);
            using var x = randn(16, 8, 32);
            using var target = x.flip(1);
            var losses = new double[40];
            for (int step = 0; step < losses.Length; step++)
            {
                using var scope = NewDisposeScope();
                var loss = MixedPrecision.Loss(block.call(policy.Cast(x)), target, (o, t) => F.mse_loss(o, t));
                losses[step] = loss.item<float>();
                policy.Backward(loss);
                policy.Step(optimizer);
                policy.ZeroGrad(optimizer);
            }
            return losses;
        }
        var fp32 = Train(Precision.Fp32);
        var bf16 = Train(Precision.Bf16);
        Assert.True(bf16[^1] < 0.7 * bf16[0], $"bf16 loss went from {bf16[0]:F4} to {bf16[^1]:F4}");
        Assert.True(Math.Abs(bf16[^1] - fp32[^1]) < 0.1 * fp32[^1] + 0.01, $"bf16 ends at {bf16[^1]:F4}, fp32 at {fp32[^1]:F4}");
    }

    [Fact]
    public void Fp32IsAPassThrough()
    {
        using var block = new TransformerBlock(32, 2);
        var before = block.parameters().ToList();
        using var policy = MixedPrecision.Create(block, Precision.Fp32, Cpu);
        Assert.Equal(before.Select(p => p.Handle), policy.MasterParameters.Select(p => p.Handle));
        Assert.Null(policy.Scaler);
    }

    [Fact]
    public void Bf16WithoutHardwareSupportFallsBackWithANotice()
    {
        using var block = new TransformerBlock(32, 2);
        var notices = new List<string>();
        using var policy = MixedPrecision.Create(block, Precision.Bf16, Cpu, notices.Add, cpuHasFastBf16: false);
        Assert.Equal(Precision.Fp32, policy.Effective);
        Assert.Contains("AVX512-BF16", Assert.Single(notices));
        Assert.All(block.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
    }

    [Fact]
    public void Fp16OnCpuIsRefused()
    {
        using var block = new TransformerBlock(32, 2);
        var e = Assert.Throws<ArgumentException>(() => MixedPrecision.Create(block, Precision.Fp16, Cpu));
        Assert.Contains("CUDA", e.Message);
    }

    [Theory]
    [InlineData(true, "use bf16")]
    [InlineData(false, "use fp32")]
    public void Fp16OnCpuAdvisesBf16OnlyWhereTheCpuRunsIt(bool fastBf16, string advice)
    {
        var e = Assert.Throws<ArgumentException>(() => MixedPrecision.Resolve(Precision.Fp16, Cpu, fastBf16));
        Assert.Contains(advice, e.Message);
        if (!fastBf16) Assert.DoesNotContain("use bf16", e.Message);
    }

    [Theory]
    [InlineData(Precision.Bf16, true, Precision.Bf16)]
    [InlineData(Precision.Bf16, false, Precision.Fp32)]
    [InlineData(Precision.Fp32, true, Precision.Fp32)]
    public void ResolveSaysWhatRuns(Precision requested, bool fastBf16, Precision effective)
    {
        var (actual, notice) = MixedPrecision.Resolve(requested, Cpu, fastBf16);
        Assert.Equal(effective, actual);
        Assert.Equal(actual != requested, notice is not null);
    }

    [Fact]
    public void ScalerSkipsOverflowAndGrows()
    {
        var scaler = new GradScaler(initScale: 1024, growthInterval: 3);
        scaler.Update(finite: false);
        Assert.Equal(512, scaler.Scale);
        for (int i = 0; i < 3; i++) scaler.Update(finite: true);
        Assert.Equal(1024, scaler.Scale);
        Assert.Equal(0, scaler.GrowthTracker);
        scaler.Restore(256, 2);
        Assert.Equal((256.0, 2), scaler.State);
        Assert.Throws<ArgumentOutOfRangeException>(() => scaler.Restore(double.PositiveInfinity, 0));
    }

    [Fact]
    public void MemoryStaysFlatUnderBf16()
    {
        using var block = new TransformerBlock(32, 2);
        using var policy = MixedPrecision.Create(block, Precision.Bf16, Cpu, cpuHasFastBf16: true);
        using var optimizer = optim.AdamW(policy.MasterParameters, lr: 1e-3);
        using var x = randn(4, 8, 32);
        void Step() => Scope.Run(() =>
        {
            policy.Backward(MixedPrecision.Loss(block.call(policy.Cast(x)), x, (o, t) => F.mse_loss(o, t)));
            policy.Step(optimizer);
            policy.ZeroGrad(optimizer);
        });
        for (int i = 0; i < 50; i++) Step();
        long live = DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < 300; i++) Step();
        Assert.Equal(live, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
