using System.Text.Json.Nodes;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// `FineTuneOptions.Ema`: the average follows the weights with the warmed-up decay, goes into checkpoints, is what
/// validation scores and what the model folder keeps.
/// </summary>
public sealed class EmaTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-ema-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    [Fact]
    public void TheAverageFollowsTheWeightsWithAWarmedUpDecay()
    {
        Seeding.SeedEverything(0);
        using var task = new FineTuneModule(new MedformerModel(Config), new ClassificationHead(Config, 3), Strategy.Full, () => new JsonObject()) { Ema = 0.5 };
        task.Prepare(ScalarType.Float32, CPU);
        var (name, weight) = task.Module.named_parameters().First(p => p.name.StartsWith("model.", StringComparison.Ordinal));
        using var start = weight.detach().clone();
        using (no_grad()) weight.add_(1);
        task.AfterStep(1, 10);  // decay min(0.5, 2/11)
        double first = 1 - 2.0 / 11;
        using (task.AveragedWeights())
            Assert.True(weight.allclose(start + first, rtol: 0, atol: 1e-5), "the average in place of the weights");
        Assert.True(weight.allclose(start + 1, rtol: 0, atol: 0), "the trained weights back afterwards");
        using (no_grad()) weight.add_(1);
        task.AfterStep(100, 200);  // decay 0.5 from here on
        double second = 0.5 * first + 0.5 * 2;

        var state = task.ExtraState()[FineTuneModule.EmaFile];
        Assert.True(state[name].allclose(start + second, rtol: 0, atol: 1e-5));
        Assert.Equal(task.Module.parameters().Count(p => p.requires_grad), state.Count);
        Seeding.SeedEverything(1);
        using var resumed = new FineTuneModule(new MedformerModel(Config), new ClassificationHead(Config, 3),
            Strategy.Full, () => new JsonObject()) { Ema = 0.5 };
        resumed.Prepare(ScalarType.Float32, CPU);
        resumed.LoadExtraState(FineTuneModule.EmaFile, state, "ema.safetensors");
        resumed.CopyAverages();
        var other = resumed.Module.named_parameters().Single(p => p.name == name).parameter;
        Assert.True(other.allclose(start + second, rtol: 0, atol: 1e-5), "a checkpoint's averages load into another run");
        Assert.Contains("no averaged weight", Assert.Throws<InvalidDataException>(() =>
            resumed.LoadExtraState(FineTuneModule.EmaFile, new Dictionary<string, Tensor>(), "ema.safetensors")).Message);
    }

    [Fact]
    public void TheFineTunedModelIsTheAverageAndValidationScoresIt()
    {
        using var train = ClassificationHeadTests.Squares(48, 1, LabelKind.MultiClass);
        using var validation = ClassificationHeadTests.Squares(30, 2, LabelKind.MultiClass);
        var options = new FineTuneOptions { MaxSteps = 20, BatchSize = 8, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32,
            EvaluateEvery = 10 };
        FineTuner Tune(double ema, string? output)
        {
            Seeding.SeedEverything(0);
            var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
            tuner.Fit(train, options with { Ema = ema, OutputDirectory = output }, validation);
            return tuner;
        }
        using var plain = Tune(0, null);
        using var averaged = Tune(0.9, Path.Combine(root, "ema"));
        using var images = stack(Enumerable.Range(0, 8).Select(i => validation.Get(i).Image));
        using var fromPlain = plain.Predict(images);
        using var fromAverage = averaged.Predict(images);
        Assert.False(fromPlain.allclose(fromAverage), "the average is not the last step's weights");
        using (var reloaded = FineTuner.Load(Path.Combine(root, "ema", "model")))
        using (var again = reloaded.Predict(images))
            Assert.True(again.allclose(fromAverage, rtol: 0, atol: 1e-6), "the model folder holds the average");

        using var bad = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3));
        Assert.Contains("EMA decay 1 must be in [0, 1)", Assert.Throws<ArgumentException>(() => bad.Fit(train, options with { Ema = 1 })).Message);
    }
}
