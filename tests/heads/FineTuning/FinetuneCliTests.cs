using System.Text.Json.Nodes;
using Medformer.Datasets.Formats;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>`medformer finetune` then `medformer predict` end to end, on the phantom with a tiny model, and their bad-argument errors.</summary>
public sealed class FinetuneCliTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-cli-");

    public void Dispose() => scratch.Dispose();

    Repo.Result Run(params string[] args) => scratch.Run(args);

    string PretrainedFolder() => scratch.PretrainedFolder();

    [Fact]
    public void FinetunesThenPredictsOnNpzAndNifti()
    {
        string tuned = Path.Combine(scratch.Root, "tuned");
        var result = Run("finetune", "--checkpoint", PretrainedFolder(), "--task", "phantom", "--head", "classification:pooling=mean", "--strategy",
            "llrd:0.75",
            "--fraction", "0.05", "--max-steps", "6", "--batch-size", "8", "--precision", "fp32", "--out", tuned, "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(200, report["train_samples"]!.GetValue<long>());  // 5% of 4,000, stratified over 10 classes
        Assert.Equal(6, report["steps"]!.GetValue<long>());
        Assert.InRange(report["test"]!["accuracy"]!.GetValue<double>(), 0, 1);
        Assert.Equal(1000, report["test"]!["samples"]!.GetValue<double>());
        Assert.Equal(500, report["validation"]!["samples"]!.GetValue<double>());
        string model = report["model"]!.GetValue<string>();
        var head = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "head.json")))!;
        Assert.Equal("classification", head["kind"]!.GetValue<string>());
        Assert.Equal("llrd:0.75", head["strategy"]!.GetValue<string>());
        Assert.Equal(10, head["class_names"]!.AsArray().Count);

        // Logged for MLflow: finished, the test scores and the model folder as an artifact.
        string runFolder = Directory.GetFiles(Path.Combine(scratch.Root, "mlruns"), "meta.yaml", SearchOption.AllDirectories)
            .Select(Path.GetDirectoryName).Single(d => Directory.Exists(Path.Combine(d!, "metrics")))!;
        Assert.Contains("status: 3", File.ReadAllText(Path.Combine(runFolder, "meta.yaml")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "test_accuracy")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "loss")));
        Assert.Equal("llrd:0.75", File.ReadAllText(Path.Combine(runFolder, "params", "strategy")));
        Assert.True(File.Exists(Path.Combine(runFolder, "artifacts", "model", "head.json")));

        string npz = Path.Combine(scratch.Root, "three.npz");
        using (var images = randint(0, 256, [3, 28, 28]).to(ScalarType.Byte)) Npz.Write(npz, new Dictionary<string, Tensor> { ["images"] = images });
        string nifti = Path.Combine(scratch.Root, "slice.nii.gz");
        using (var slice = rand(40, 40) * 1000 - 500) NiftiWriter.Write(nifti, slice, [0.5, 0.5]);  // resized to 28×28, scaled to [0, 1]
        string predictions = Path.Combine(scratch.Root, "predictions");
        var predicted = Run("predict", "--checkpoint", model, npz, nifti, "--out", predictions, "--json");
        Assert.True(predicted.ExitCode == 0, predicted.Stderr);
        var csv = File.ReadAllLines(Path.Combine(predictions, "predictions.csv"));
        Assert.Equal(5, csv.Length);  // header + 3 + 1
        Assert.StartsWith("input,index,predicted,\"ellipse, smooth\"", csv[0]);
        var json = JsonNode.Parse(File.ReadAllText(Path.Combine(predictions, "predictions.json")))!;
        var first = json["predictions"]![0]!["probabilities"]!.AsObject();
        Assert.Equal(1.0, first.Sum(p => p.Value!.GetValue<double>()), 4);
        Assert.Equal(nifti, json["predictions"]![3]!["input"]!.GetValue<string>());

        // A volume for a model tuned on 2D images names the file.
        string volume = Path.Combine(scratch.Root, "volume.nii.gz");
        using (var voxels = rand(8, 28, 28)) NiftiWriter.Write(volume, voxels, [1.0, 1.0, 1.0]);
        var wrong = Run("predict", "--checkpoint", model, volume, "--out", predictions);
        Assert.Equal(1, wrong.ExitCode);
        Assert.Contains("volume.nii.gz: a 3D volume [8, 28, 28]; the model was fine-tuned on 2D images", wrong.Stderr);
    }

    [Fact]
    public void BadArgumentsAreOneLine()
    {
        string pretrained = PretrainedFolder();
        var fraction = Run("finetune", "--checkpoint", pretrained, "--fraction", "1.5", "--out", Path.Combine(scratch.Root, "a"));
        Assert.Equal(2, fraction.ExitCode);
        Assert.Contains("--fraction 1.5: must be in (0, 1]", fraction.Stderr);
        var strategy = Run("finetune", "--checkpoint", pretrained, "--strategy", "some", "--out", Path.Combine(scratch.Root, "b"));
        Assert.Equal(2, strategy.ExitCode);
        Assert.Contains("--strategy 'some'", strategy.Stderr);
        var missing = Run("finetune", "--checkpoint", Path.Combine(scratch.Root, "missing"), "--out", Path.Combine(scratch.Root, "c"));
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("no such checkpoint folder", missing.Stderr);
        var notTuned = Run("predict", "--checkpoint", pretrained, "x.npz");
        Assert.Equal(1, notTuned.ExitCode);
        Assert.Contains("not a fine-tuned one", notTuned.Stderr);
        foreach (var r in new[] { fraction, strategy, missing, notTuned }) Assert.Single(r.Stderr.Trim().Split('\n'));
    }

    [Fact]
    public void VolumeTasksTrainOnCropsAndScoreWholeVolumesByWindows()
    {
        string pretrained = PretrainedFolder();
        // PET studies of 24³ restored from crops of 16³: 8 studies → 5 training, 1 validation, 2 test (HoldOut).
        string pet = SyntheticPet.Write(Path.Combine(scratch.Root, "pet"), 8, 24, seed: 3);
        var restored = Run("finetune", "--checkpoint", pretrained, "--task", $"petct:{pet}", "--roi", "16", "--max-steps", "3", "--batch-size", "2",
            "--precision", "fp32", "--out", Path.Combine(scratch.Root, "pet-tuned"), "--tracking-uri", "none", "--json");
        Assert.True(restored.ExitCode == 0, restored.Stderr);
        var report = JsonNode.Parse(restored.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(5, report["train_samples"]!.GetValue<long>());
        Assert.Equal("restoration", report["head"]!.GetValue<string>());
        Assert.True(report["test"]!["mse"]!.GetValue<double>() > 0);
        var head = JsonNode.Parse(File.ReadAllText(Path.Combine(report["model"]!.GetValue<string>(), "head.json")))!;
        Assert.Equal("[1,16,16,16]", head["input_shape"]!.ToJsonString());

        // An MSD task: segmentation by default, classes from dataset.json, 20³ volumes scored by windows of 16³.
        string msd = SyntheticMsd.Write(Path.Combine(scratch.Root, "Task99_Spheres"), 6, 20, seed: 4);
        var segmented = Run("finetune", "--checkpoint", pretrained, "--task", $"msd:{msd}", "--roi", "16,16,16", "--max-steps", "3", "--batch-size", "2",
            "--precision", "fp32", "--out", Path.Combine(scratch.Root, "msd-tuned"), "--tracking-uri", "none", "--json");
        Assert.True(segmented.ExitCode == 0, segmented.Stderr);
        report = JsonNode.Parse(segmented.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal("segmentation", report["head"]!.GetValue<string>());
        Assert.InRange(report["test"]!["dice"]!.GetValue<double>(), 0, 1);
        Assert.True(report["test"]!.AsObject().ContainsKey("dice_1"));

        var exposure = Run("finetune", "--checkpoint", pretrained, "--task", $"petct:{pet}:60:x", "--out", Path.Combine(scratch.Root, "x"), "--tracking-uri",
            "none");
        Assert.Equal(2, exposure.ExitCode);
        Assert.Contains("'x' is not an exposure", exposure.Stderr);
        var roi = Run("finetune", "--checkpoint", pretrained, "--task", $"petct:{pet}", "--roi", "10", "--out", Path.Combine(scratch.Root, "y"),
            "--tracking-uri", "none");
        Assert.Equal(2, roi.ExitCode);
        Assert.Contains("multiple of the patch size", roi.Stderr);
        var classification = Run("finetune", "--checkpoint", pretrained, "--task", "phantom", "--roi", "16", "--out", Path.Combine(scratch.Root, "z"),
            "--tracking-uri", "none");
        Assert.Equal(2, classification.ExitCode);
        Assert.Contains("--roi", classification.Stderr);
    }
}
