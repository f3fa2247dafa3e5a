using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>Each classification type learns on the phantom through the FineTuner and the shared trainer, in seconds.</summary>
public sealed class ClassificationHeadTests(ITestOutputHelper output)
{
    internal static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static FineTuneOptions Options(long steps) => new() { MaxSteps = steps, BatchSize = 32, LearningRate = 2e-3, WarmupSteps = 10, Precision = Precision.Fp32, LogEvery = 10 };

    [Theory]
    [InlineData(TaskType.MultiClass, Pooling.Flatten, 10, 0.35)]
    [InlineData(TaskType.MultiClass, Pooling.ClassQueries, 10, 0.35)]
    [InlineData(TaskType.Binary, Pooling.Mean, 2, 0.7)]
    [InlineData(TaskType.Ordinal, Pooling.Flatten, 5, 0.4)]
    [InlineData(TaskType.MultiLabel, Pooling.Query, 6, 0.8)]
    public void LearnsOnThePhantom(TaskType type, Pooling pooling, int classes, double floor)
    {
        Func<long[], long[]> relabel = type switch
        {
            TaskType.Binary => Relabelled.Binary,
            TaskType.Ordinal => Relabelled.Ordinal,
            TaskType.MultiLabel => Relabelled.MultiLabel,
            _ => l => l,
        };
        using var trainSplit = Phantom.Open(PhantomSpec.Default2d, "train");
        using var valSplit = Phantom.Open(PhantomSpec.Default2d, "val");
        var train = new Relabelled(trainSplit, relabel);
        var val = new Relabelled(valSplit, relabel);
        Seeding.SeedEverything(0);
        var model = new Medformer(Config);
        using var tuner = new FineTuner(model, new ClassificationHead(Config, classes, type, pooling));
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = tuner.Fit(train, Options(200), val);
        var history = result.Training.History;
        output.WriteLine($"{type} {pooling}: loss {history[0].Loss:F3} → {history[^1].Loss:F3}; {string.Join(", ", result.Validation!.Select(p => $"{p.Key} {p.Value:F3}"))}; {clock.Elapsed.TotalSeconds:F1} s");
        Assert.True(history[^1].Loss < 0.8 * history[0].Loss, $"loss {history[0].Loss} → {history[^1].Loss}");
        string metric = type == TaskType.MultiLabel ? "auc" : "accuracy";
        Assert.True(result.Validation![metric] > floor, $"{metric} {result.Validation[metric]:F3}");
    }
}
