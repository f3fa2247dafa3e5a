using Medformer.Datasets.Corpora;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>`FineTuneOptions.Mixup`: a classifier still learns with mixed batches, the draws are seeded, it changes training, and bad values are
/// refused.</summary>
public sealed class MixupTests
{
    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    static FineTuneOptions Quick(long steps, double mixup) =>
        new() { MaxSteps = steps, BatchSize = 16, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32, LogEvery = 5, Mixup = mixup };

    static (FineTuner Tuner, FineTuneResult Result) Tune(double mixup, long steps, ICorpus train, ICorpus? validation = null)
    {
        Seeding.SeedEverything(0);
        var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
        return (tuner, tuner.Fit(train, Quick(steps, mixup), validation));
    }

    static Tensor Weights(FineTuner tuner) => cat([.. tuner.Model.parameters().Select(p => p.detach().flatten())]);

    [Fact]
    public void AClassifierLearnsFromMixedBatchesReproducibly()
    {
        using var train = ClassificationHeadTests.Squares(96, 1, LabelKind.MultiClass);
        using var test = ClassificationHeadTests.Squares(48, 2, LabelKind.MultiClass);
        var (mixed, result) = Tune(0.4, 120, train, test);
        using (mixed)
        {
            Assert.True(result.Validation!["accuracy"] > 0.8, $"accuracy {result.Validation["accuracy"]}");
            var (again, _) = Tune(0.4, 10, train);
            var (plain, _) = Tune(0, 10, train);
            var (twice, _) = Tune(0.4, 10, train);
            using (again)
            using (plain)
            using (twice)
            using (var a = Weights(again))
            using (var b = Weights(twice))
            using (var c = Weights(plain))
            {
                Assert.True(a.eq(b).all().item<bool>(), "the same seed draws the same λ and partners");
                Assert.False(a.allclose(c), "mixup changes what the steps do");
            }
        }
    }

    [Fact]
    public void BadValuesAreRefused()
    {
        using var train = ClassificationHeadTests.Squares(16, 1, LabelKind.MultiClass);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3));
        Assert.Contains("mixup α -1 must be 0 (off) or positive", Assert.Throws<ArgumentException>(() => tuner.Fit(train, Quick(2, -1))).Message);
        using var segmenter = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2));
        Assert.Contains("mixup mixes class labels; the segmentation head predicts masks",
            Assert.Throws<ArgumentException>(() => segmenter.Fit(train, Quick(2, 0.4))).Message);
    }

    [Theory]
    [InlineData(0.4)]
    [InlineData(1.0)]
    [InlineData(20.0)]
    public void LambdaFollowsBetaAlphaAlpha(double alpha)
    {
        using var generator = new torch.Generator(7);
        var draws = Enumerable.Range(0, 4000).Select(_ => FineTuneModule.SampleBeta(alpha, generator)).ToArray();
        double mean = draws.Average(), variance = draws.Select(d => (d - mean) * (d - mean)).Average();
        double expected = 1 / (4 * (2 * alpha + 1));   // Beta(α, α): mean 1/2, variance 1/(4(2α+1))
        Assert.All(draws, d => Assert.InRange(d, 0, 1));
        Assert.InRange(mean, 0.48, 0.52);
        Assert.InRange(variance, expected * 0.9, expected * 1.1);
    }
}
