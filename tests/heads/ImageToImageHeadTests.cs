using Medformer.Datasets.Corpora;
using Medformer.Datasets.Layouts;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Heads;

public sealed class ImageToImageHeadTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-image-to-image-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => SegmentationHeadTests.Config;

    static double Mse(Tensor a, Tensor b)
    {
        using var difference = a - b;
        using var square = difference.square();
        using var mean = square.mean();
        return mean.item<float>();
    }

    [Fact]
    public void RestorationLearnsToBeatTheNoisyInputOnSyntheticPet()
    {
        var train = new PetCtCorpus(SyntheticPet.Write(Path.Combine(root, "train"), 24, 16, seed: 1));
        var test = new PetCtCorpus(SyntheticPet.Write(Path.Combine(root, "test"), 6, 16, seed: 2));
        Assert.Equal("petct-60s-to-90s", train.Name);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new ImageToImageHead(Config, ImageToImageHead.Restoration, Dimensionality.Volume,
            loss: new ImageLoss(L1: 0, Mse: 1)));
        var options = new FineTuneOptions { MaxSteps = 60, BatchSize = 4, WarmupSteps = 5, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 10 };
        var result = tuner.Fit(train, options).Training;
        output.WriteLine($"loss {string.Join(" ", result.History.Select(h => h.Loss.ToString("F4")))}");

        using var scope = NewDisposeScope();
        var samples = Enumerable.Range(0, (int)test.Count).Select(i => test.Get(i)).ToList();
        var inputs = stack(samples.Select(s => s.Image));
        var targets = stack(samples.Select(s => s.Target!));
        var restored = tuner.Predict(inputs, [.. samples.Select(s => s.Meta)]);
        double identity = Mse(inputs, targets), ours = Mse(restored, targets);
        var baseline = GaussianFilterBaseline.Fit(train);
        double gaussian = Mse(stack(samples.Select(s => baseline.Best.Restore(s.Image))), targets);
        output.WriteLine($"test MSE: input {identity:F4}, restored {ours:F4}, Gaussian σ {baseline.Best.Sigma} {gaussian:F4}");
        Assert.True(ours < 0.8 * identity, $"restored MSE {ours:F4} against the 60 s input's {identity:F4}");
        var scores = tuner.Evaluate(test);
        Assert.Equal(ours, scores["mse"], 3);
        Assert.True(scores["ssim"] is > 0 and <= 1);
        foreach (var s in samples) s.Dispose();
    }

    [Fact]
    public void SuperResolutionStartsAtTheUpsampledInputAndPredictsByWindowsOnTheFinerGrid()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(5);
        var images = F.avg_pool2d(rand(8, 1, 64, 64), [2, 2]);                // smooth-ish 32×32 images
        using var corpus = new TensorCorpus("blobs", images);
        var pair = new SuperResolutionPair(2).Apply(corpus.Get(0), new Random(0));
        Assert.Equal([1L, 16, 16], pair.Image.shape);
        Assert.Equal([1L, 32, 32], pair.Target!.shape);
        Assert.Equal(2.0, pair.Meta.Spacing[0]);

        using var tuner = new FineTuner(new MedformerModel(Config), new ImageToImageHead(Config, ImageToImageHead.SuperResolution, scale: 2));
        var input = pair.Image.unsqueeze(0);
        var upsampled = F.interpolate(input, [32, 32], mode: InterpolationMode.Bilinear, align_corners: false);
        var predicted = tuner.Predict(input, [pair.Meta]);
        Assert.Equal([1L, 1, 32, 32], predicted.shape);
        Assert.True(predicted.allclose(upsampled, atol: 1e-6));              // zero-initialised correction
        var windows = tuner.PredictSlidingWindow(images.narrow(0, 0, 1), [8, 8], null, new SlidingWindowOptions(BatchSize: 8));
        Assert.Equal([1L, 1, 64, 64], windows.shape);

        var result = tuner.Fit(corpus, new FineTuneOptions { MaxSteps = 20, BatchSize = 4, WarmupSteps = 2, LearningRate = 3e-3, Precision = Precision.Fp32,
            LogEvery = 5, Augment = new SuperResolutionPair(2) }).Training;
        Assert.True(result.History[^1].Loss < result.History[0].Loss, $"loss {result.History[0].Loss} → {result.History[^1].Loss}");
    }

    [Fact]
    public void SsimLossTrainsAndHeadsRebuildFromTheirSettings()
    {
        var head = new ImageToImageHead(Config, ImageToImageHead.Translation, Dimensionality.Image, outChannels: 2, loss: new ImageLoss(L1: 1, Ssim: 0.5,
            DataRange: 1));
        Assert.False(head.Residual);
        using var rebuilt = HeadRegistry.Create(ImageToImageHead.Translation, Config, "image_to_image", head.Settings());
        Assert.Equal(head.Settings().ToJsonString(), rebuilt.Settings().ToJsonString());
        var sr = HeadRegistry.Create(ImageToImageHead.SuperResolution, Config, "image_to_image", new() { ["scale"] = 4, ["ssim"] = 1 });
        Assert.Equal(4, ((ImageToImageHead)sr).Scale);
        var segmentation = HeadRegistry.Create(SegmentationHead.KindName, Config, "segmentation", new() { ["classes"] = "3", ["dimensionality"] = "3d" });
        Assert.Equal(3, ((SegmentationHead)segmentation).Classes);
        Assert.Contains("unknown setting 'scales'", Assert.Throws<ArgumentException>(() => HeadRegistry.Create(ImageToImageHead.SuperResolution, Config,
            "image_to_image", new() { ["scales"] = 2 })).Message);
        Assert.Throws<ArgumentException>(() => new ImageToImageHead(Config, ImageToImageHead.Restoration, scale: 2));

        using var scope = NewDisposeScope();
        Seeding.SeedEverything(6);
        var inputs = rand(8, 1, 16, 16);
        var targets = cat([inputs.flip(3), 1 - inputs], dim: 1);              // two channels of another "modality"
        using var corpus = new TensorCorpus("pairs", inputs, targets: targets);
        using var tuner = new FineTuner(new MedformerModel(Config), head);
        var result = tuner.Fit(corpus, new FineTuneOptions { MaxSteps = 20, BatchSize = 4, WarmupSteps = 2, LearningRate = 3e-3, Precision = Precision.Fp32,
            LogEvery = 5 }).Training;
        Assert.True(result.History[^1].Loss < result.History[0].Loss, $"loss {result.History[0].Loss} → {result.History[^1].Loss}");
    }

    [Fact]
    public void TheGaussianBaselineBeatsTheNoisyInput()
    {
        using var scope = NewDisposeScope();
        // 2D: smooth images and their noisy copies.
        Seeding.SeedEverything(7);
        var clean = F.avg_pool2d(rand(12, 1, 96, 96), [3, 3]);
        var noisy = clean + randn_like(clean) * 0.2;
        using var pairs = new TensorCorpus("noisy", noisy, targets: clean);
        var fit = GaussianFilterBaseline.Fit(pairs);
        output.WriteLine($"2D: σ {fit.Best.Sigma}, MSE {fit.BestMse:F4} against {fit.IdentityMse:F4}; " +
            $"{string.Join(" ", fit.Grid.Select(g => $"{g.Sigma}:{g.Mse:F4}"))}");
        Assert.True(fit.Best.Sigma > 0);
        Assert.True(fit.BestMse < 0.6 * fit.IdentityMse);
        Assert.Equal(fit.IdentityMse, fit.Grid[0].Mse, 6);                    // σ 0 is the input itself

        // 3D: PET at 60 s against 90 s, σ chosen on validation studies, scored on others.
        var validation = new PetCtCorpus(SyntheticPet.Write(Path.Combine(root, "val"), 4, 16, seed: 3));
        var test = new PetCtCorpus(SyntheticPet.Write(Path.Combine(root, "test"), 4, 16, seed: 4));
        var pet = GaussianFilterBaseline.Fit(validation);
        var scored = GaussianFilterBaseline.Fit(test, [0, pet.Best.Sigma]);
        output.WriteLine($"3D PET: σ {pet.Best.Sigma}; test MSE {scored.Grid[1].Mse:F4} against the input's {scored.IdentityMse:F4}");
        Assert.True(scored.Grid[1].Mse < 0.8 * scored.IdentityMse);
    }
}
