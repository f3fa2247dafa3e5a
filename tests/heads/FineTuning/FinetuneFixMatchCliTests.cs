using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>`medformer finetune --fixmatch` (and `--ema`): FixMatch after fine-tuning on the images --fraction leaves out, from the command line, and bad
/// values.</summary>
public sealed class FinetuneFixMatchCliTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-fixmatch-");

    public void Dispose() => scratch.Dispose();

    Repo.Result Run(params string[] args) => scratch.Run(args);

    [Fact]
    public void FixMatchGoesOnOverTheImagesWithoutLabels()
    {
        string tuned = Path.Combine(scratch.Root, "tuned");
        var result = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "4", "--batch-size",
            "4",
            "--precision", "fp32", "--fixmatch", "threshold=0.5,ratio=2,steps=3", "--out", tuned, "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(3, report["steps"]!.GetValue<long>());
        var fixMatch = report["fixmatch"]!;
        Assert.Equal("threshold=0.5,ratio=2,weight=1,steps=3", fixMatch["settings"]!.GetValue<string>());
        Assert.True(fixMatch["unlabelled"]!.GetValue<long>() > 10 * report["train_samples"]!.GetValue<long>());
        Assert.Equal(Path.Combine(tuned, "fixmatch", "model"), report["model"]!.GetValue<string>());
        Assert.True(File.Exists(Path.Combine(tuned, "model", "head.json")), "the fine-tuned model stays");
        Assert.True(File.Exists(Path.Combine(tuned, "fixmatch", "model", "head.json")));

        string runFolder = Directory.GetFiles(Path.Combine(scratch.Root, "mlruns"), "meta.yaml", SearchOption.AllDirectories)
            .Select(Path.GetDirectoryName).Single(d => Directory.Exists(Path.Combine(d!, "metrics")))!;
        Assert.Equal("threshold=0.5,ratio=2,weight=1,steps=3", File.ReadAllText(Path.Combine(runFolder, "params", "fixmatch")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "fine_tuned_test_accuracy")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "loss_pseudo_label_rate")),
            "the share of confident pseudo-labels is logged (with the loss parts)");
        // MLflow's step axis goes on after fine-tuning's 4 steps: FixMatch's 3 are steps 5 to 7 (logged at the last).
        long[] steps = [.. File.ReadAllLines(Path.Combine(runFolder, "metrics", "loss")).Select(l => long.Parse(l.Split(' ')[2]))];
        Assert.Equal([4L, 7L], steps);

        var plain = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "2", "--batch-size",
            "2",
            "--precision", "fp32", "--fixmatch", "--ema", "0.99", "--out", Path.Combine(scratch.Root, "plain"));
        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Contains("fine-tuned: test accuracy", plain.Stdout);
        Assert.Contains(Path.Combine("plain", "fixmatch", "model"), plain.Stdout);
    }

    [Fact]
    public void BadValuesNameFixMatch()
    {
        string pretrained = scratch.PretrainedFolder();
        (string[] Args, string Message)[] cases =
        [
            (["--fraction", "0.1", "--fixmatch", "threshold=2"], "--fixmatch 'threshold=2': FixMatch threshold 2 must be in [0, 1]"),
            (["--fraction", "0.1", "--fixmatch", "ratio=0"], "--fixmatch 'ratio=0': FixMatch unlabelled ratio 0 must be positive"),
            (["--fraction", "0.1", "--fixmatch", "steps=0"], "--fixmatch 'steps=0': steps 0 must be at least 1"),
            (["--fraction", "0.1", "--fixmatch", "mu=7"], "--fixmatch 'mu=7': unknown key 'mu'"),
            (["--fixmatch"], "--fixmatch: its unlabelled images are the training images --fraction leaves out; with --fraction 1 there are none"),
            (["--fraction", "0.5", "--head", "segmentation", "--fixmatch"], "--fixmatch: pseudo-labels are classes; the segmentation head has none"),
            (["--fraction", "0.5", "--fixmatch", "--self-train"], "--fixmatch and --self-train both use the unlabelled images after fine-tuning: pick one"),
            (["--fraction", "0.5", "--fixmatch", "--mixup", "0.2"], "--fixmatch and --mixup do not combine: pick one"),
            (["--ema", "1"], "EMA decay 1 must be in [0, 1) (0: off)"),
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
