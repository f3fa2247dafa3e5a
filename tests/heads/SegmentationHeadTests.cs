using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

public sealed class SegmentationHeadTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-segmentation-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    internal static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static string PhantomFolder => Path.Combine(Repo.TestHome, "phantom-heads");

    /// <summary>Foreground Dice of label maps [N,1,…] (classes 0/1), pooled over all pixels.</summary>
    static double ForegroundDice(Tensor predicted, Tensor truth)
    {
        using var scope = NewDisposeScope();
        var p = predicted.eq(1);
        var t = truth.eq(1);
        double overlap = p.logical_and(t).sum().item<long>(), total = p.sum().item<long>() + t.sum().item<long>();
        return 2 * overlap / total;
    }

    [Fact]
    public void LearnsThePhantomMasksIn2d()
    {
        var spec = new PhantomSpec(Dimensionality.Image, 28, 600, 20, 100);
        using var train = Phantom.Open(spec, "train", PhantomFolder);
        using var test = Phantom.Open(spec, "test", PhantomFolder);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2));
        var options = new FineTuneOptions { MaxSteps = 120, BatchSize = 16, WarmupSteps = 10, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 10,
            OutputDirectory = root };
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var result = tuner.Fit(train, options).Training;
        output.WriteLine($"{clock.Elapsed.TotalSeconds:F1} s; loss {string.Join(" ", result.History.Select(h => h.Loss.ToString("F3")))}");
        Assert.True(result.History[^1].Loss < 0.6 * result.History[0].Loss, $"loss {result.History[0].Loss} → {result.History[^1].Loss}");

        var scores = tuner.Evaluate(test);
        output.WriteLine($"metric {string.Join(", ", scores.Select(p => $"{p.Key} {p.Value:F3}"))}");
        using var scope = NewDisposeScope();
        var samples = Enumerable.Range(0, (int)test.Count).Select(i => test.Get(i)).ToList();
        var images = stack(samples.Select(s => s.Image));
        var truth = stack(samples.Select(s => s.Target!));
        var predicted = tuner.Predict(images, [.. samples.Select(s => s.Meta)]);
        Assert.Equal([100L, 1, 28, 28], predicted.shape);
        double dice = ForegroundDice(predicted, truth);
        double fraction = truth.to(ScalarType.Float32).mean().item<float>();
        // All background scores 0; guessing foreground at its rate scores about the rate itself.
        output.WriteLine($"foreground Dice {dice:F3}; foreground fraction {fraction:F3}");
        Assert.True(dice > Math.Max(0.5, 3 * fraction), $"foreground Dice {dice:F3} (foreground is {fraction:P1} of the pixels)");
        Assert.Equal(dice, scores["dice"], 4);
        foreach (var s in samples) s.Dispose();
    }

    [Fact]
    public void LearnsThePhantomMasksIn3dAndPredictsALargerVolumeBySlidingWindows()
    {
        var spec = new PhantomSpec(Dimensionality.Volume, 16, 64, 4, 4);
        using var train = Phantom.Open(spec, "train", PhantomFolder);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2, dimensionality: Dimensionality.Volume));
        var options = new FineTuneOptions { MaxSteps = 40, BatchSize = 4, WarmupSteps = 5, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 10 };
        var result = tuner.Fit(train, options).Training;
        output.WriteLine($"loss {string.Join(" ", result.History.Select(h => h.Loss.ToString("F3")))}");
        Assert.True(result.History[^1].Loss < 0.8 * result.History[0].Loss, $"loss {result.History[0].Loss} → {result.History[^1].Loss}");

        using var scope = NewDisposeScope();
        using var sample = train.Get(0);
        // A volume larger than the 16³ training crop, and not a multiple of the patch: windows of 16³, padded where needed.
        var large = nn.functional.pad(sample.Image.unsqueeze(0), [3, 4, 5, 6, 0, 2], TorchSharp.PaddingModes.Replicate).squeeze(0);   // [1,18,27,23]
        var mask = tuner.PredictSlidingWindow(large.unsqueeze(0), [16, 16, 16], [sample.Meta], new SlidingWindowOptions(BatchSize: 4));
        Assert.Equal([1L, 1, 18, 27, 23], mask.shape);
        Assert.True(mask.eq(0).logical_or(mask.eq(1)).all().item<bool>());
        // Where the window covers the whole volume, sliding windows are whole-volume inference: the model path.
        var whole = tuner.Predict(sample.Image.unsqueeze(0), [sample.Meta]);
        var windowed = tuner.PredictSlidingWindow(sample.Image.unsqueeze(0), [16, 16, 16], [sample.Meta]);
        Assert.True(whole.eq(windowed).all().item<bool>());
    }

    [Fact]
    public void DiceCeMatchesAWrittenOutReference()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(4);
        var logits = randn(2, 3, 4, 5);
        var labels = randint(0, 3, [2, 1, 4, 5]);
        var criterion = new DiceCELoss();
        double expected = 0;
        var l = logits.data<float>().ToArray();
        var y = labels.data<long>().ToArray();
        var perSample = new double[2];
        for (int b = 0; b < 2; b++)
        {
            double ce = 0, dice = 0;
            var (intersection, predicted, truth) = (new double[3], new double[3], new double[3]);
            for (int p = 0; p < 20; p++)
            {
                var z = Enumerable.Range(0, 3).Select(k => (double)l[b * 60 + k * 20 + p]).ToArray();
                double max = z.Max(), sum = z.Sum(v => Math.Exp(v - max));
                long label = y[b * 20 + p];
                ce -= z[label] - max - Math.Log(sum);
                for (int k = 0; k < 3; k++)
                {
                    double prob = Math.Exp(z[k] - max) / sum, g = label == k ? 1 : 0;
                    intersection[k] += prob * g;
                    predicted[k] += prob;
                    truth[k] += g;
                }
            }
            for (int k = 0; k < 3; k++) dice += 1 - (2 * intersection[k] + 1e-5) / (predicted[k] + truth[k] + 1e-5);
            perSample[b] = dice / 3 + ce / 20;
            expected += perSample[b] / 2;
        }
        Assert.Equal(expected, criterion.Loss(logits, labels).item<float>(), 5);
        var losses = criterion.PerSample(logits, labels.squeeze(1));
        Assert.Equal(perSample[0], losses[0].item<float>(), 5);
        Assert.Equal(perSample[1], losses[1].item<float>(), 5);
    }

    [Fact]
    public void StartsAtZeroLogitsAndItsPerSampleLossesAverageToTheLoss()
    {
        var spec = new PhantomSpec(Dimensionality.Image, 28, 600, 20, 100);
        using var train = Phantom.Open(spec, "train", PhantomFolder);
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(0);
        var head = new SegmentationHead(Config, classes: 2);
        using var tuner = new FineTuner(new MedformerModel(Config), head);
        using var batch = new DataLoader([new LoaderSource(train)], new LoaderOptions(4, Workers: 1)).Batches().First();
        var outputs = tuner.Predict(batch.Images, batch.Metas);
        Assert.Equal(0, outputs.sum().item<float>());   // zero logits: every pixel's argmax is class 0
        var latents = tuner.Model.forward(batch.Images, [.. batch.Metas.Select(m => new LatentKey(m.Organ, m.Modality, head.Task))]);
        var logits = head.call(new HeadInput(tuner.Model, latents, batch.Images.shape, batch.Metas, batch.Images));
        Assert.Equal(0, logits.abs().max().item<float>());
        var losses = head.Losses(logits, batch);
        var loss = new DiceCELoss().Loss(logits, batch.Views[0].Targets!);
        Assert.Equal(loss.item<float>(), losses.mean().item<float>(), 5);
        // Zero logits: cross-entropy ln 2, and Dice per class 1 − 2·(n_k/2)/(N/2 + n_k) on top.
        Assert.True(loss.item<float>() > Math.Log(2));
    }
}
