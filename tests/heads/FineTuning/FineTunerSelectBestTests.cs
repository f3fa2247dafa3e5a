using Medformer.Datasets.Corpora;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Xunit;

namespace Medformer.Tests.Heads;

/// <summary>FineTuneOptions.SelectBest: the tuner ends with the weights of the best validation check, not the last step's.</summary>
public sealed class FineTunerSelectBestTests
{
    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    [Fact]
    public void KeepsTheBestChecksWeights()
    {
        var spec = new PhantomSpec(Dimensionality.Image, 16, 120, 60, 0);
        using var train = Phantom.Open(spec, "train", Path.Combine(Repo.TestHome, "phantom"));
        using var validation = Phantom.Open(spec, "val", Path.Combine(Repo.TestHome, "phantom"));
        Seeding.SeedEverything(5);
        var model = new MedformerModel(Config);
        using var tuner = new FineTuner(model, new ClassificationHead(model.Config, 10, pooling: Pooling.Mean));
        var options = new FineTuneOptions
        {
            MaxSteps = 16, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 2, Precision = Precision.Fp32, EvaluateEvery = 4, SelectBest = "accuracy",
                Workers = 0,
        };
        var result = tuner.Fit(train, options, validation);
        var checks = result.Training.Evaluations;
        Assert.Equal([4L, 8, 12, 16], checks.Select(c => c.Step));
        double best = checks.Max(c => c.Metrics["accuracy"]);
        Assert.Equal(checks.First(c => c.Metrics["accuracy"] == best).Step, result.SelectedStep);
        Assert.Equal(best, result.Validation!["accuracy"]);

        using var other = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 10, pooling: Pooling.Mean));
        Assert.Contains("gives accuracy, auc", Assert.Throws<ArgumentException>(() => other.Fit(train, options with { SelectBest = "dice" },
            validation)).Message);
        Assert.Contains("needs a validation corpus", Assert.Throws<ArgumentException>(() => other.Fit(train, options)).Message);
    }
}
