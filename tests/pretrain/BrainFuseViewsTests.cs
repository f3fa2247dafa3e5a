using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Pretrain;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using Medformer.Training;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Pretrain;

/// <summary>The run config's brainfuse: BrainFuse mixes as the views of the instance objectives, with a consistency term.</summary>
public sealed class BrainFuseViewsTests
{
    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static Batch MakeBatch(bool volume, int count = 6)
    {
        long[] spatial = volume ? [8, 8, 8] : [16, 16];
        var metas = Enumerable.Range(0, count).Select(i => new SampleMeta("test", $"test[{i}]", i, "other", "other",
            volume ? Dimensionality.Volume : Dimensionality.Image, [.. spatial.Select(_ => 1.0)], [])).ToList();
        var images = randn([count, 1, .. spatial]);
        return new Batch(0, [new BatchView(images, null, null), new BatchView(images.flip(-1), null, null)], metas);
    }

    static BrainFuseViews Views(double consistency, MixWeights weights = MixWeights.Spatial) => new(new BrainFuse(1.0, weights, [2]), 2, 0.5, consistency);

    [Fact]
    public void BothViewsOfAMixAreTheSameCombinationOfTheirPartsViews()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(1);
        using var batch = MakeBatch(volume: false);
        using var generator = new Generator(3);
        var (mixes, mixed) = Views(0).Mix(batch, generator);
        using (mixes)
        {
            Assert.Equal(3, mixes.Rows.Length);
            for (int v = 0; v < 2; v++)
                for (int m = 0; m < mixes.Rows.Length; m++)
                {
                    var (a, b) = (mixes.Parts[m][0], mixes.Parts[m][1]);
                    var expected = batch.Views[v].Images[a] * mixes.Weights[m][0] + batch.Views[v].Images[b] * mixes.Weights[m][1];
                    Assert.True(expected.allclose(mixed.Views[v].Images[mixes.Rows[m]], 1e-5, 1e-6), $"view {v}, mix {m}");
                }
            Assert.True(batch.Images[3..].eq(mixed.Images[3..]).all().item<bool>());
        }
    }

    [Theory]
    [InlineData("barlow", false)]
    [InlineData("barlow", true)]
    [InlineData("simclr", false)]
    public void InstanceObjectivesTrainOnMixesWithConsistencyDeterministically(string name, bool volume)
    {
        Pretraining Task(BrainFuseViews? fuse)
        {
            Seeding.SeedEverything(5);
            Objective objective = name == "barlow" ? new BarlowTwins(Config.Dim, projectionDim: 16) : new SimClr(Config.Dim, projectionDim: 16);
            var task = new Pretraining(new MedformerModel(Config), [(objective, 1.0)], brainFuse: fuse);
            task.Prepare(ScalarType.Float32, CPU);
            return task;
        }
        (double Loss, IReadOnlyDictionary<string, double> Parts) Loss(Pretraining task, Batch batch, bool backward = false)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator(11);
            var (loss, parts) = task.Loss(batch, new StepContext(0, generator, x => x.alias()));
            if (backward) loss.backward();
            return (loss.item<float>(), parts.ToDictionary(p => p.Key, p => (double)p.Value.item<float>()));
        }
        Seeding.SeedEverything(2);
        using var batch = MakeBatch(volume);
        using var fused = Task(Views(0.5));
        using var plain = Task(null);
        var (loss, parts) = Loss(fused, batch, backward: true);
        Assert.True(double.IsFinite(loss));
        Assert.True(parts[$"{name}_consistency"] is >= 0 and <= 2, $"consistency {parts[$"{name}_consistency"]}");
        Assert.Equal(parts[name] + 0.5 * parts[$"{name}_consistency"], loss, 4);
        Assert.Equal(loss, Loss(fused, batch).Loss, 5);                     // the step's generator draws the same mixes
        Assert.NotEqual(Loss(plain, batch).Loss, loss, 3);
        var encoder = fused.Module.named_parameters().Single(p => p.name == "model.encoder.attn.q.weight").parameter;
        Assert.True(encoder.grad!.abs().sum().item<float>() > 0);
    }

    [Fact]
    public void APretrainingJobMixesTheViewsItsRunConfigAsksFor()
    {
        string root = Directory.CreateTempSubdirectory("medformer-brainfuse-pretrain-").FullName;
        try
        {
            var config = RunConfig.Parse("""
                objectives:
                  barlow: { projection_dim: 16 }
                  rotation: { weight: 0.5 }
                schedule: { max_steps: 3, warmup_steps: 1 }
                batch: { size: 8, workers: 1 }
                precision: fp32
                log_every: 1
                checkpoint_every: 0
                brainfuse: { parts: 3, weights: dirichlet, consistency: 0.5 }
                """, "run.yaml");
            var result = PretrainJob.Run(config, root);
            Assert.Equal(3, result.Training.Steps);
            Assert.All(result.Training.History, h => Assert.True(h.Parts.ContainsKey("barlow_consistency") && h.Parts.ContainsKey("rotation") &&
                double.IsFinite(h.Loss)));
            Assert.DoesNotContain(result.Training.History[^1].Parts.Keys, k => k == "rotation_consistency");
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }

    [Fact]
    public void ARunConfigReadsBrainFuseAndMistakesNameTheKey()
    {
        var config = RunConfig.Parse("objectives:\n  barlow: {}\n  rotation: {}\nbrainfuse: { parts: 3, weights: dirichlet, share: 0.25, consistency: 0.1 }",
            "run.yaml");
        Assert.Equal((3, "dirichlet", 0.25, 0.1), (config.Brainfuse!.Parts, config.Brainfuse.Weights, config.Brainfuse.Share, config.Brainfuse.Consistency));
        var views = config.Brainfuse.ToViews("run.yaml");
        Assert.Equal(MixWeights.Dirichlet, views.Mixer.Weights);
        (string Yaml, string Message)[] cases =
        [
            ("objectives:\n  barlow: {}\nbrainfuse: { parts: 1 }", "run.yaml: brainfuse.parts: 1: a mix needs at least 2 parts"),
            ("objectives:\n  barlow: {}\nbrainfuse: { weights: box }", "run.yaml: brainfuse.weights: 'box' must be dirichlet or smooth"),
            ("objectives:\n  barlow: {}\nbrainfuse: { share: 0 }", "run.yaml: brainfuse.share: 0 must be in (0, 1]"),
            ("objectives:\n  barlow: {}\nbrainfuse: { lambda: 1 }", "unknown key 'lambda' in brainfuse"),
            ("objectives:\n  rotation: {}\nbrainfuse: {}",
                "run.yaml: brainfuse: mixes the views of instance objectives (simclr, barlow), and objectives rotation have none"),
            ("objectives:\n  barlow: {}\nbatch: { size: 2 }\nbrainfuse: { parts: 3 }",
                "run.yaml: brainfuse.parts: 3 needs batches of at least 3 samples, batch.size is 2"),
        ];
        foreach (var (yaml, message) in cases)
        {
            var error = Assert.Throws<ArgumentException>(() => RunConfig.Parse(yaml, "run.yaml"));
            Assert.Contains(message, error.Message);
            Assert.Single(error.Message.Split('\n'));
        }
        Assert.Contains("brainfuse: mixes the views of instance objectives",
            Assert.Throws<ArgumentException>(() => new Pretraining(new MedformerModel(Config), [(new Rotation(Config.Dim), 1.0)],
                brainFuse: Views(0))).Message);
    }
}
