using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Runtime;
using Medformer.Tests.Heads;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Cli;

/// <summary>
/// Each command that writes an --out folder, on a folder holding someone's canary.txt: refused in one line (exit 2)
/// with the folder left as it was, written into with --force without losing the canary, and rerun on its own
/// output (as resuming does); and on a folder of its own, rerun as before.
/// </summary>
public sealed class OutputFolderCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-output-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Mlruns => Path.Combine(root, "mlruns");

    Repo.Result Run(params string[] args)
    {
        var environment = new Dictionary<string, string> { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = Mlruns };
        var result = Repo.Run(Repo.Cli, args, root, 600, environment);
        output.WriteLine($"medformer {string.Join(' ', args)} -> {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result;
    }

    static string[] Entries(string folder) => [.. Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order()!];

    /// <summary>
    /// The whole story for one command: <paramref name="args"/> builds its command line for an --out folder,
    /// <paramref name="rerun"/> (default the same) the one that reruns it on its own output; <paramref name="produced"/>
    /// is a file pattern the command writes there.
    /// </summary>
    void NeverRemovesWhatItDidNotWrite(string command, Func<string, string[]> args, string produced, Func<string, string[]>? rerun = null)
    {
        rerun ??= args;
        string work = Directory.CreateDirectory(Path.Combine(root, command + "-work")).FullName;
        string canary = Path.Combine(work, "canary.txt");
        File.WriteAllText(canary, "tweet");
        var around = Entries(root);

        var refused = Run(args(work));
        Assert.Equal(2, refused.ExitCode);
        string line = Assert.Single(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Contains(work, line);
        Assert.Contains("--force", line);
        Assert.Equal(["canary.txt"], Entries(work));   // no marker, no temporary folder, no MLflow run
        Assert.Equal(around, Entries(root));
        Assert.False(Directory.Exists(Mlruns));

        var forced = Run([.. args(work), "--force"]);
        Assert.True(forced.ExitCode == 0, forced.Stderr);
        Assert.Equal("tweet", File.ReadAllText(canary));
        Assert.NotEmpty(Directory.GetFiles(work, produced, SearchOption.AllDirectories));

        var again = Run(rerun(work));
        Assert.True(again.ExitCode == 0, again.Stderr);
        Assert.Equal("tweet", File.ReadAllText(canary));

        string fresh = Path.Combine(root, command + "-fresh");
        var first = Run(args(fresh));
        Assert.True(first.ExitCode == 0, first.Stderr);
        var second = Run(rerun(fresh));
        Assert.True(second.ExitCode == 0, second.Stderr);
        Assert.NotEmpty(Directory.GetFiles(fresh, produced, SearchOption.AllDirectories));
        var marker = JsonNode.Parse(File.ReadAllText(Path.Combine(fresh, OutputFolder.MarkerFile)))!;
        Assert.Equal(command, marker["command"]!.GetValue<string>());
        Assert.True(marker["exclusive"]!.GetValue<bool>());
    }

    string Model(string name)
    {
        string folder = Path.Combine(root, name);
        Seeding.SeedEverything(0);
        using var model = new MedformerModel(ClassificationHeadTests.Config);
        Checkpoint.Save(model, folder);
        return folder;
    }

    string[] FinetuneArgs(string checkpoint, string outDir) =>
        ["finetune", "--checkpoint", checkpoint, "--task", "phantom", "--fraction", "0.02", "--max-steps", "2", "--batch-size", "8", "--precision", "fp32",
            "--out", outDir];

    [Fact]
    public void ExportKeepsTheCanary()
    {
        string source = Model("source");
        NeverRemovesWhatItDidNotWrite("export", o => ["export", source, "--out", o], Checkpoint.WeightsFile);
    }

    [Fact]
    public void ImportKeepsTheCanary()
    {
        string file = Path.Combine(root, "weights.safetensors");
        using (var model = new MedformerModel(ClassificationHeadTests.Config))
            Safetensors.Save(model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach()), file);
        string config = Path.Combine(root, "config.json");
        File.WriteAllText(config, ClassificationHeadTests.Config.ToJson());
        NeverRemovesWhatItDidNotWrite("import", o => ["import", file, "--config", config, "--out", o], Checkpoint.WeightsFile);
    }

    [Fact]
    public void PretrainKeepsTheCanaryAndResumes()
    {
        string config = Path.Combine(root, "run.yaml");
        File.WriteAllText(config, """
            model: tiny
            corpora: [{ phantom: 2d }]
            objectives: { inpainting: {} }
            batch: { size: 4, workers: 1 }
            schedule: { max_steps: 2, warmup_steps: 1 }
            log_every: 1
            """);
        NeverRemovesWhatItDidNotWrite("pretrain", o => ["pretrain", "--config", config, "--out", o, "--threads", "2"], Checkpoint.WeightsFile,
            rerun: o => ["pretrain", "--config", config, "--out", o, "--threads", "2", "--resume", "--max-steps", "3"]);
    }

    [Fact]
    public void FinetuneKeepsTheCanary()
    {
        string pretrained = Model("pretrained");
        NeverRemovesWhatItDidNotWrite("finetune", o => FinetuneArgs(pretrained, o), Checkpoint.WeightsFile);
    }

    [Fact]
    public void PredictKeepsTheCanary()
    {
        var tuned = Run([.. FinetuneArgs(Model("pretrained"), Path.Combine(root, "tuned")), "--tracking-uri", "none"]);
        Assert.True(tuned.ExitCode == 0, tuned.Stderr);
        string npz = Path.Combine(root, "three.npz");
        using (var images = randint(0, 256, [3, 28, 28]).to(ScalarType.Byte)) Npz.Write(npz, new Dictionary<string, Tensor> { ["images"] = images });
        string model = Path.Combine(root, "tuned", "model");
        NeverRemovesWhatItDidNotWrite("predict", o => ["predict", "--checkpoint", model, npz, "--out", o], "predictions.json");
    }

    [Fact]
    public void EvaluateKeepsTheCanary()
    {
        string file = Phantom.Ensure(new PhantomSpec(Dimensionality.Image, 16, 40, 16, 16), Path.Combine(root, "data"));
        string config = Path.Combine(root, "config.json");
        File.WriteAllText(config, JsonSerializer.Serialize(ClassificationHeadTests.Config, MedformerConfig.Json));
        NeverRemovesWhatItDidNotWrite("evaluate", o => ["evaluate", "--task", $"npz:{file}", "--init", "random", "--fractions", "100%", "--seeds", "1",
            "--max-steps", "2", "--batch-size", "8", "--config", config, "--precision", "fp32", "--out", o], "cells.jsonl");
    }

    [Fact]
    public void DownloadKeepsTheCanary()
    {
        NeverRemovesWhatItDidNotWrite("download", o => ["download", "phantom", "--size", "16", "--out", o], "*.npz");
        // medmnist's --out is checked the same way, before any registry or network.
        string work = Directory.CreateDirectory(Path.Combine(root, "medmnist-work")).FullName;
        File.WriteAllText(Path.Combine(work, "canary.txt"), "tweet");
        var refused = Run("download", "medmnist", "pathmnist", "--out", work);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains(work, Assert.Single(refused.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries)));
        Assert.Equal(["canary.txt"], Entries(work));
    }
}
