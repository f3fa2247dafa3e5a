using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Pretrain.Objectives;
using Medformer.Pretrain.Training;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

public sealed class ClassificationTaskTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-classification-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    /// <summary>Three classes told apart by where a bright square sits (left, centre, right), on noise.</summary>
    static TensorCorpus Squares(int count, long seed)
    {
        Seeding.SeedEverything(seed);
        var images = randn(count, 1, 16, 16) * 0.2;
        var labels = new long[count];
        for (int i = 0; i < count; i++)
        {
            labels[i] = i % 3;
            int column = 1 + 5 * (int)labels[i], row = (i * 7) % 10;
            images[i, 0, row..(row + 5), column..(column + 4)] += 2;
        }
        return new TensorCorpus("squares", images, tensor(labels));
    }

    [Theory]
    [InlineData(Pooling.Flatten)]
    [InlineData(Pooling.Mean)]
    [InlineData(Pooling.Query)]
    public void LearnsThroughTheTrainer(Pooling pooling)
    {
        using var train = Squares(96, 1);
        using var test = Squares(48, 2);
        Seeding.SeedEverything(0);
        using var task = new ClassificationTask(new Medformer(Config), 3, pooling);
        var options = new TrainerOptions { MaxSteps = 150, WarmupSteps = 10, LearningRate = 2e-3, Precision = Precision.Fp32, LogEvery = 10 };
        var result = new Trainer(options, CPU).Fit(task,
            start => new DataLoader([new LoaderSource(train)], new LoaderOptions(16, Workers: 1)).Batches(start), Path.Combine(root, pooling.ToString()));
        Assert.True(result.History[^1].Loss < 0.5 * Math.Log(3), $"loss {result.History[0].Loss} → {result.History[^1].Loss}");

        var samples = Enumerable.Range(0, (int)test.Count).Select(i => test.Get(i)).ToList();
        using var images = stack(samples.Select(s => s.Image));
        using var probabilities = task.PredictProbabilities(images, [.. samples.Select(s => s.Meta)]);
        Assert.Equal([48L, 3], probabilities.shape);
        Assert.True(probabilities.sum(1).sub(1).abs().max().item<float>() < 1e-5);
        using var predicted = probabilities.argmax(1);
        double accuracy = samples.Select((s, i) => predicted[i].item<long>() == s.Meta.Labels[0] ? 1.0 : 0.0).Average();
        Assert.True(accuracy > 0.8, $"test accuracy {accuracy:P0}");
        foreach (var s in samples) s.Dispose();
    }

    [Fact]
    public void StartsAtTheUniformPredictionAndItsPerSampleLossesAverageToTheLoss()
    {
        using var corpus = Squares(8, 3);
        Seeding.SeedEverything(0);
        using var task = new ClassificationTask(new Medformer(Config), 3);
        using var batch = new DataLoader([new LoaderSource(corpus)], new LoaderOptions(8, Workers: 1)).Batches().First();
        using var generator = new Generator(1);
        var step = new StepContext(0, generator, x => x);
        var (loss, _) = task.Loss(batch, step);
        var (losses, _) = task.PerSampleLoss(batch, step)!.Value;
        Assert.Equal(Math.Log(3), loss.item<float>(), 5);
        Assert.Equal(loss.item<float>(), losses.mean().item<float>(), 6);
    }

    [Fact]
    public void LabelsOutsideTheHeadAreClearErrors()
    {
        Seeding.SeedEverything(0);
        using var corpus = new TensorCorpus("bad", randn(4, 1, 16, 16), tensor(new long[] { 0, 1, 5, 2 }));
        using var task = new ClassificationTask(new Medformer(Config), 3);
        using var batch = new DataLoader([new LoaderSource(corpus)], new LoaderOptions(4, Workers: 1)).Batches().First();
        using var generator = new Generator(1);
        var e = Assert.Throws<ArgumentException>(() => task.Loss(batch, new StepContext(0, generator, x => x)));
        Assert.Contains("label 5 is outside the head's 3 classes", e.Message);
        Assert.Throws<ArgumentException>(() => new ClassificationTask(new Medformer(Config), 1));
    }
}
