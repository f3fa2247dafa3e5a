using Medformer.Pretrain;
using Xunit;

namespace Medformer.Tests.Pretrain;

public sealed class RunConfigTests
{
    [Fact]
    public void AYamlRunConfigReadsAsWritten()
    {
        var config = RunConfig.Parse("""
            model: small
            corpora:
              - phantom: 3d
                weight: 2
              - medmnist: /data/pathmnist.npz
            objectives:
              inpainting: { weight: 1, mask_ratio: 0.6 }
              pixpro: { weight: 0.5, threshold: 0.7, gamma: 2 }
            optimizer: { lr: 3.0e-4, betas: [0.9, 0.99] }
            schedule: { max_steps: 1000, warmup_steps: 20 }
            batch: { size: 32, accumulation: 2 }
            precision: fp32
            seed: 11
            """, "run.yaml");
        Assert.Equal("small", config.Model);
        Assert.Equal(("3d", 2.0), (config.Corpora[0].Phantom, config.Corpora[0].Weight));
        Assert.Equal("/data/pathmnist.npz", config.Corpora[1].Medmnist);
        Assert.Equal(0.6, config.Objectives["inpainting"].MaskRatio);
        Assert.Equal(3e-4, config.Optimizer.Lr);
        Assert.Equal([0.9, 0.99], config.Optimizer.Betas);
        Assert.Equal((1000L, 2, 11L), (config.Schedule.MaxSteps, config.Batch.Accumulation, config.Seed));
    }

    [Fact]
    public void JsonIsYamlToo()
    {
        var config = RunConfig.Parse("""{"model": "tiny", "objectives": {"barlow": {"lambda": 0.01}}, "precision": "bf16"}""", "run.json");
        Assert.Equal(0.01, config.Objectives["barlow"].Lambda);
    }

    [Theory]
    [InlineData("optimizer:\n  lrr: 1", "run.yaml (line 2): unknown key 'lrr' in optimizer")]
    [InlineData("objectives:\n  simclr: { temprature: 0.1 }", "unknown key 'temprature' in an objective")]
    [InlineData("objectives:\n  mocov3: {}", "objectives.mocov3: unknown objective")]
    [InlineData("objectives:\n  rotation: { temperature: 0.1 }", "objectives.rotation.temperature: rotation has no such setting")]
    [InlineData("objectives:\n  inpainting: { mask_ratio: 1.5 }", "objectives.inpainting.mask_ratio: 1.5 must be in (0, 1)")]
    [InlineData("corpora:\n  - phantom: 2d\n    msd: /x", "corpora[0]: give exactly one of phantom, medmnist, msd")]
    [InlineData("precision: fp8", "precision 'fp8' must be fp32, bf16 or fp16")]
    [InlineData("batch: { size: 0 }", "batch.size: 0 must be positive")]
    [InlineData("schedule: { max_steps: ten }", "run.yaml (line 1)")]
    public void MistakesNameTheKey(string yaml, string expected)
    {
        var error = Assert.Throws<ArgumentException>(() => RunConfig.Parse(yaml, "run.yaml"));
        Assert.Contains(expected, error.Message);
        Assert.StartsWith("run.yaml", error.Message);
    }

    [Fact]
    public void OverridesMakeANewConfigOnceAndLeaveTheReadOneAlone()
    {
        var read = RunConfig.Parse("schedule: { max_steps: 40, warmup_steps: 4 }\nprecision: bf16\nseed: 3", "run.yaml");
        var applied = PretrainJob.ApplyOverrides(read, new PretrainOverrides(Precision: "fp32", Seed: 9, MaxSteps: 12, Strict: true));
        Assert.Equal((40L, "bf16", 3L, false), (read.Schedule.MaxSteps, read.Precision, read.Seed, read.Strict));
        Assert.Equal((12L, 4L, "fp32", 9L, true), (applied.Schedule.MaxSteps, applied.Schedule.WarmupSteps, applied.Precision, applied.Seed, applied.Strict));
        Assert.Same(read.Corpora, applied.Corpora);
        // Nothing overridden: an equal config.
        Assert.Equal(read, PretrainJob.ApplyOverrides(read, new PretrainOverrides()));

        // The plan carries the config the job runs and records.
        string output = Directory.CreateTempSubdirectory("medformer-runconfig-").FullName;
        try
        {
            var plan = PretrainJob.Check(read, output, new PretrainOverrides(Precision: "fp32", MaxSteps: 12));
            Assert.Equal(12, plan.Config.Schedule.MaxSteps);
            Assert.Equal(40, read.Schedule.MaxSteps);
            Assert.Contains("\"max_steps\": 12", PretrainJob.ToJson(plan.Config));
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
    }
}
