using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>`medformer finetune --self-train` (and `--mixup`): pseudo-labels on the images --fraction leaves out, from the command line, and bad
/// values.</summary>
public sealed class FinetuneSelfTrainCliTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-selftrain-");

    public void Dispose() => scratch.Dispose();

    Repo.Result Run(params string[] args) => scratch.Run(args);

    [Fact]
    public void SelfTrainingGoesOnOverThePseudoLabelledImages()
    {
        string tuned = Path.Combine(scratch.Root, "tuned");
        var result = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "4", "--batch-size",
            "8",
            "--precision", "fp32", "--self-train", "threshold=0,share=0.5,steps=3", "--out", tuned, "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(3, report["steps"]!.GetValue<long>());
        var selfTraining = report["self_training"]!;
        Assert.Equal("threshold=0,share=0.5,rounds=1,steps=3,student=teacher", selfTraining["settings"]!.GetValue<string>());
        long unlabelled = selfTraining["unlabelled"]!.GetValue<long>(), pseudo = selfTraining["pseudo_labelled"]![0]!.GetValue<long>();
        long labelled = report["train_samples"]!.GetValue<long>();
        Assert.True(unlabelled > 10 * labelled, $"{unlabelled} images without labels beside {labelled} with");
        Assert.Equal(unlabelled, pseudo);  // threshold 0 keeps every pseudo-label
        Assert.Equal(Path.Combine(tuned, "self-training-1", "model"), report["model"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(tuned, "model", "head.json")), "the teacher's model stays");
        Assert.Contains("pseudo-labelled", result.Stderr);

        string runFolder = Directory.GetFiles(Path.Combine(scratch.Root, "mlruns"), "meta.yaml", SearchOption.AllDirectories)
            .Select(Path.GetDirectoryName).Single(d => Directory.Exists(Path.Combine(d!, "metrics")))!;
        Assert.Equal("threshold=0,share=0.5,rounds=1,steps=3,student=teacher", File.ReadAllText(Path.Combine(runFolder, "params", "self_train")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "teacher_test_accuracy")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "test_accuracy")));

        // Without settings: the defaults, the student trained for --max-steps; a fresh student from the checkpoint.
        var plain = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "2", "--batch-size",
            "8",
            "--precision", "fp32", "--self-train", "--mixup", "0.4", "--out", Path.Combine(scratch.Root, "plain"));
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Contains("teacher: test accuracy", plain.Stdout);
        Assert.Contains(Path.Combine("plain", "self-training-1", "model"), plain.Stdout);
        var fresh = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "2", "--batch-size",
            "8",
            "--precision", "fp32", "--self-train", "student=pretrained,rounds=2", "--out", Path.Combine(scratch.Root, "fresh"), "--json");
        Assert.True(fresh.ExitCode == 0, fresh.Stderr);
        var freshReport = JsonNode.Parse(fresh.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal("threshold=0,share=0.5,rounds=2,steps=2,student=pretrained", freshReport["self_training"]!["settings"]!.GetValue<string>());
        Assert.Equal(2, freshReport["self_training"]!["pseudo_labelled"]!.AsArray().Count);
        Assert.True(File.Exists(Path.Combine(scratch.Root, "fresh", "self-training-2", "model", "head.json")));
    }

    [Fact]
    public void BadValuesNameSelfTrain()
    {
        string pretrained = scratch.PretrainedFolder();
        (string[] Args, string Message)[] cases =
        [
            (["--fraction", "0.1", "--self-train", "threshold=2"], "--self-train 'threshold=2': self-training threshold 2 must be in [0, 1]"),
            (["--fraction", "0.1", "--self-train", "share=1"], "unlabelled share 1 must be in (0, 1)"),
            (["--fraction", "0.1", "--self-train", "rounds=two"], "--self-train 'rounds=two': rounds 'two' is not an integer"),
            (["--fraction", "0.1", "--self-train", "steps"], "--self-train 'steps': 'steps' is not key=value"),
            (["--fraction", "0.1", "--self-train", "epochs=3"], "--self-train 'epochs=3': unknown key 'epochs'"),
            (["--fraction", "0.1", "--self-train", "student=scratch"], "--self-train 'student=scratch': student 'scratch' is not teacher or pretrained"),
            (["--self-train"], "--self-train: pseudo-labels go to the training images --fraction leaves out; with --fraction 1 there are none"),
            (["--fraction", "0.5", "--head", "segmentation", "--self-train"], "--self-train: pseudo-labels are classes; the segmentation head has none"),
            (["--mixup", "-1"], "mixup α -1 must be 0 (off) or positive"),
        ];
        foreach (var (args, message) in cases)
        {
            var result = Run(["finetune", "--checkpoint", pretrained, "--task", "phantom", .. args, "--out", Path.Combine(scratch.Root, "bad")]);
            Assert.Equal(2, result.ExitCode);
            Assert.Contains(message, result.Stderr);
            Assert.Single(result.Stderr.Trim().Split('\n'));
        }
    }
}
