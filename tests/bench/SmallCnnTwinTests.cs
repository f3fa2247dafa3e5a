using System.Text.Json;
using Medformer.Bench;
using Medformer.Datasets.Corpora;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Bench;

/// <summary>
/// The small CNN of <c>bench/run pays</c> and its PyTorch twin (bench/reference/cnn.py): the same weights and batch
/// give the same loss and gradients; and its trainer learns, with and without FixMatch.
/// </summary>
public sealed class SmallCnnTwinTests(ITestOutputHelper output)
{
    [Fact]
    public void TheTwinComputesOurLossAndGradientsOnOneBatch()
    {
        Seeding.SeedEverything(21);
        string dir = Directory.CreateTempSubdirectory("medformer-cnn-parity-").FullName;
        try
        {
            using var model = new SmallCnn(1, 10);
            using var scope = NewDisposeScope();
            var images = rand(8, 1, 28, 28);
            var labels = tensor(new long[] { 0, 1, 2, 3, 4, 5, 6, 9 });
            var loss = CnnTrainer.Loss(model, images, labels);
            loss.backward();
            var io = new Dictionary<string, Tensor> { ["io.images"] = images, ["io.labels"] = labels, ["io.loss"] = loss.detach().reshape(1) };
            foreach (var (name, tensor) in model.state_dict()) io[name] = tensor;
            foreach (var (name, parameter) in model.named_parameters()) io["grad." + name] = parameter.grad!;
            Assert.Contains("features.0.weight", io.Keys);
            Assert.Contains("features.1.running_var", io.Keys);
            Assert.Contains("classifier.weight", io.Keys);
            Safetensors.Save(io, Path.Combine(dir, "cnn.safetensors"));

            var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "cnn_parity.py"), dir]);
            output.WriteLine(result.Stdout + result.Stderr);
            Assert.Equal(0, result.ExitCode);
            using var report = JsonDocument.Parse(result.Stdout);
            var root = report.RootElement;
            Assert.Empty(root.GetProperty("missing").EnumerateArray());
            Assert.Empty(root.GetProperty("unexpected").EnumerateArray());
            Assert.Equal(11, root.GetProperty("grads_compared").GetInt32());
            Assert.True(root.GetProperty("loss_error").GetDouble() < 1e-5, "losses differ: " + result.Stdout);
            Assert.True(root.GetProperty("max_grad_error").GetDouble() < 1e-4, "gradients differ: " + result.Stdout);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void TheTrainerLearnsTwoClassesWithAndWithoutFixMatch()
    {
        // Bright left half against bright right half, with noise: any working trainer separates them.
        Seeding.SeedEverything(22);
        using var scope = NewDisposeScope();
        Tensor Images(long[] classes)
        {
            var x = rand(classes.Length, 1, 12, 12) * 0.3;
            for (int i = 0; i < classes.Length; i++) x[i, 0, .., classes[i] == 0 ? 0..6 : 6..12] += 0.7;
            return x;
        }
        long[] trainClasses = [.. Enumerable.Range(0, 16).Select(i => (long)(i % 2))];
        long[] testClasses = [.. Enumerable.Range(0, 64).Select(i => (long)(i % 2))];
        using var train = new TensorCorpus("halves/train", Images(trainClasses), tensor(trainClasses));
        using var unlabelled = new TensorCorpus("halves/unlabelled", Images(testClasses), tensor(testClasses));
        var testImages = Images(testClasses);
        var testLabels = tensor(testClasses);
        var trainer = new CnnTrainer(new SmallCnn(1, 2), new FineTuneOptions { MaxSteps = 30, BatchSize = 8, LearningRate = 3e-3, WarmupSteps = 3,
            LogEvery = 0 });
        using var model = trainer.Model;
        double before = trainer.Accuracy(testImages, testLabels);
        trainer.Fit(train);
        double after = trainer.Accuracy(testImages, testLabels);
        output.WriteLine($"accuracy {before:P0} → {after:P0}");
        Assert.True(after >= 0.9, $"trained to {after:P0}");
        var weights = model.state_dict()["features.0.weight"].clone();
        double share = trainer.FixMatch(train, unlabelled, new FixMatchOptions { Threshold = 0.7, UnlabelledRatio = 2 }, 5, [12, 12]);
        Assert.InRange(share, 0, 1);
        Assert.False(weights.allclose(model.state_dict()["features.0.weight"], rtol: 0, atol: 0), "FixMatch changed no weight");
        Assert.True(trainer.Accuracy(testImages, testLabels) >= 0.9);
    }
}
