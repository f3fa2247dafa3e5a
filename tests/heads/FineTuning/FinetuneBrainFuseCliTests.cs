using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>`medformer finetune --brainfuse`: mixes with combined targets and consistency from the command line, and bad values naming the flag.</summary>
public sealed class FinetuneBrainFuseCliTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-brainfuse-");

    public void Dispose() => scratch.Dispose();

    Repo.Result Run(params string[] args) => scratch.Run(args);

    [Fact]
    public void BrainFuseRunsAndIsReported()
    {
        var result = Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom", "--fraction", "0.05", "--max-steps", "3", "--batch-size",
            "4",
            "--precision", "fp32", "--brainfuse", "parts=3,weights=smooth,share=0.5,consistency=0.5", "--out", Path.Combine(scratch.Root, "fused"), "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(3, report["steps"]!.GetValue<long>());
        var fuse = report["brainfuse"]!;
        Assert.Equal("parts=3,alpha=1,weights=smooth,share=0.5,consistency=0.5,grid=4", fuse["settings"]!.GetValue<string>());
        Assert.True(fuse["loss_brainfuse"]!.GetValue<double>() > 0);
        Assert.True(fuse["loss_consistency"]!.GetValue<double>() >= 0);
        string runFolder = Directory.GetFiles(Path.Combine(scratch.Root, "mlruns"), "meta.yaml", SearchOption.AllDirectories)
            .Select(Path.GetDirectoryName).Single(d => Directory.Exists(Path.Combine(d!, "metrics")))!;
        Assert.Equal("parts=3,alpha=1,weights=smooth,share=0.5,consistency=0.5,grid=4", File.ReadAllText(Path.Combine(runFolder, "params", "brainfuse")));
    }

    [Fact]
    public void BadValuesNameBrainFuse()
    {
        string pretrained = scratch.PretrainedFolder();
        (string[] Args, string Message)[] cases =
        [
            (["--brainfuse", "parts=1"], "--brainfuse 'parts=1': parts=1: a mix needs at least 2 parts"),
            (["--brainfuse", "weights=box"], "--brainfuse 'weights=box': weights 'box': expected dirichlet or smooth"),
            (["--brainfuse", "lambda=1"], "--brainfuse 'lambda=1': unknown key 'lambda'"),
            (["--brainfuse", "parts=8", "--batch-size", "4"], "--brainfuse: parts=8 needs batches of at least 8 samples, not --batch-size 4"),
            (["--brainfuse", "share=0.5", "--mixup", "0.2"], "--brainfuse and --mixup both mix the batch: pick one"),
            (["--fraction", "0.5", "--brainfuse", "consistency=1", "--fixmatch"], "--brainfuse and --fixmatch do not combine: pick one"),
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
