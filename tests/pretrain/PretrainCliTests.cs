using System.Diagnostics;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Pretrain;

/// <summary>`medformer pretrain` end to end: every objective on the phantom corpus in 2D and 3D, and kill -9 then --resume.</summary>
public sealed class PretrainCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-pretrain-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    // These runs test training, not tracking (tests/tracking does): no mlruns/ in the checkout.
    static readonly Dictionary<string, string> Home = new() { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "none" };

    string Config(string name, string yaml)
    {
        string path = Path.Combine(root, name);
        File.WriteAllText(path, yaml);
        return path;
    }

    Repo.Result Pretrain(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, ["pretrain", .. args], timeoutSeconds: 600, environment: Home);
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }

    [Theory]
    [InlineData("2d", 28)]
    [InlineData("3d", 16)]
    public void EveryObjectiveTrainsOnThePhantom(string dims, int size)
    {
        string config = Config($"all-{dims}.yaml", $"""
            model: tiny
            corpora: [{"{"} phantom: {dims} {"}"}]
            objectives: {"{"} inpainting: {"{"}{"}"}, rotation: {"{"}{"}"}, jigsaw: {"{"}{"}"}, simclr: {"{"}{"}"},
              byol: {"{"}{"}"}, barlow: {"{"}{"}"}, pixpro: {"{"}{"}"} {"}"}
            batch: {"{"} size: 8, workers: 1 {"}"}
            augment: {"{"} image_size: {size}, volume_size: {size} {"}"}
            schedule: {"{"} max_steps: 4, warmup_steps: 1 {"}"}
            log_every: 2
            """);
        string outDir = Path.Combine(root, dims);
        var result = Pretrain("--config", config, "--out", outDir);
        Assert.True(result.ExitCode == 0, result.Stderr);
        foreach (string task in new[] { "inpainting", "rotation", "jigsaw", "simclr", "byol", "barlow", "pixpro" })
            Assert.Contains(task, result.Stdout);
        Assert.Contains($"model: {Path.Combine(outDir, "model")}", result.Stdout);
        Assert.True(File.Exists(Path.Combine(outDir, "checkpoint-000004", "ema.safetensors")));
    }

    [Fact]
    public void BadArgumentsAreOneLine()
    {
        var result = Pretrain("--config", Config("bad.yaml", "optimizer:\n  lrr: 1\n"), "--out", Path.Combine(root, "bad"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("bad.yaml (line 2): unknown key 'lrr' in optimizer", result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
    }

    [Theory]
    [InlineData(new[] { "pretrain", "--max-step", "20" }, "unknown option '--max-step'; did you mean --max-steps? (medformer pretrain --help)")]
    [InlineData(new[] { "pretrin" }, "unknown command 'pretrin'; did you mean pretrain? (medformer --help)")]
    [InlineData(new[] { "runs", "lst" }, "unknown command 'lst'; did you mean list? (medformer runs --help)")]
    [InlineData(new[] { "pretrain", "--zzz" }, "unknown option '--zzz' (medformer pretrain --help)")]
    public void AMisspeltFlagOrCommandIsOneLineWithTheSuggestion(string[] args, string message)
    {
        var result = Repo.Run(Repo.Cli, args, environment: Home);
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("medformer: " + message, Assert.Single(result.Stderr.Trim().Split('\n')));
        Assert.Equal("", result.Stdout);
    }

    const string Resumable = """
        model: tiny
        corpora: [{ phantom: 2d }]
        objectives: { inpainting: {}, byol: {} }
        batch: { size: 16, workers: 2 }
        schedule: { max_steps: 40, warmup_steps: 5 }
        checkpoint_every: 5
        log_every: 5
        """;

    [Fact]
    public void AKilledRunResumesToTheSameWeights()
    {
        string config = Config("resume.yaml", Resumable);
        string[] common = ["--config", config, "--deterministic", "--threads", "2", "--precision", "bf16"];
        string whole = Path.Combine(root, "whole");
        Assert.Equal(0, Pretrain([.. common, "--out", whole]).ExitCode);
        var expected = File.ReadAllBytes(Path.Combine(whole, "model", "model.safetensors"));

        var random = new Random(42);
        string parts = Path.Combine(root, "parts");
        int kills = 0;
        // Kill -9 three times, each a random moment after a random checkpoint has appeared (so sometimes inside the
        // next checkpoint's write), then resume until the run finishes.
        for (int attempt = 0; attempt < 12; attempt++)
        {
            bool resume = TrainingCheckpointExists(parts);
            var start = new ProcessStartInfo(Repo.Cli) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in (string[])["pretrain", .. common, "--out", parts, .. resume ? new[] { "--resume" } : []]) start.ArgumentList.Add(arg);
            foreach (var (key, value) in Home) start.Environment[key] = value;
            using var process = Process.Start(start)!;
            _ = process.StandardOutput.ReadToEndAsync();
            _ = process.StandardError.ReadToEndAsync();
            if (attempt < 3)
            {
                long target = 5 * (1 + random.Next(7));
                while (!process.HasExited && (LatestStep(parts) ?? 0) < target) Thread.Sleep(20);
                Thread.Sleep(random.Next(400));
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);
                    process.WaitForExit();
                    kills++;
                    continue;
                }
            }
            process.WaitForExit();
            if (process.ExitCode == 0 && File.Exists(Path.Combine(parts, "model", "model.safetensors"))) break;
        }
        Assert.True(kills >= 1, "no run was killed: the test did not test resuming");
        // A checkpoint write cut short leaves a staging folder; the next resume must ignore it.
        Assert.Equal(expected, File.ReadAllBytes(Path.Combine(parts, "model", "model.safetensors")));
    }

    [Fact]
    public void AHalfWrittenCheckpointIsIgnoredOnResume()
    {
        string config = Config("half.yaml", Resumable.Replace("max_steps: 40", "max_steps: 10"));
        string[] common = ["--config", config, "--deterministic", "--threads", "2"];
        string whole = Path.Combine(root, "whole"), parts = Path.Combine(root, "parts");
        Assert.Equal(0, Pretrain([.. common, "--out", whole]).ExitCode);
        // What kill -9 inside the step-10 checkpoint's write leaves: checkpoint-000005 whole, and a staging sibling
        // with a truncated file where checkpoint-000010 was being written, and the marker of pretrain's output folder.
        string from = Path.Combine(whole, "checkpoint-000005"), to = Path.Combine(parts, "checkpoint-000005");
        Directory.CreateDirectory(to);
        File.Copy(Path.Combine(whole, OutputFolder.MarkerFile), Path.Combine(parts, OutputFolder.MarkerFile));
        foreach (string file in Directory.GetFiles(from)) File.Copy(file, Path.Combine(to, Path.GetFileName(file)));
        string staging = Path.Combine(parts, ".checkpoint-000010.tmp-0123456789abcdef");
        Directory.CreateDirectory(staging);
        File.WriteAllBytes(Path.Combine(staging, "model.safetensors"), new byte[100]);
        Assert.Equal(0, Pretrain([.. common, "--out", parts, "--resume"]).ExitCode);
        Assert.Equal(File.ReadAllBytes(Path.Combine(whole, "model", "model.safetensors")), File.ReadAllBytes(Path.Combine(parts, "model",
            "model.safetensors")));
    }

    [Fact]
    public async Task CtrlCStopsAtAStepAndSaysHowToResume()
    {
        string config = Config("interrupt.yaml", Resumable.Replace("max_steps: 40", "max_steps: 400").Replace("checkpoint_every: 5", "checkpoint_every: 2"));
        string outDir = Path.Combine(root, "interrupted");
        // A suite started in the background (`./test.sh &`) inherits SIGINT ignored, and so would the CLI: restore the
        // default disposition through an exec that keeps it, so the CLI sees SIGINT as from a terminal.
        var start = new ProcessStartInfo(SigIntIgnored() ? "/usr/bin/python3" : Repo.Cli) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (start.FileName != Repo.Cli)
            foreach (string arg in (string[])["-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
                Repo.Cli]) start.ArgumentList.Add(arg);
        foreach (string arg in (string[])["pretrain", "--config", config, "--out", outDir, "--threads", "2"]) start.ArgumentList.Add(arg);
        foreach (var (key, value) in Home) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        _ = process.StandardOutput.ReadToEndAsync();
        var clock = Stopwatch.StartNew();
        while (!TrainingCheckpointExists(outDir) && clock.Elapsed < TimeSpan.FromSeconds(120)) Thread.Sleep(100);
        Assert.True(TrainingCheckpointExists(outDir), "no checkpoint appeared");
        using (var kill = Process.Start("kill", ["-INT", process.Id.ToString()])) kill.WaitForExit();
        Assert.True(process.WaitForExit(60_000), "the run did not stop after SIGINT");
        Assert.Equal(130, process.ExitCode);
        Assert.Matches("interrupted \\(SIGINT\\) after step [0-9]+; checkpoint: .*; continue with: medformer pretrain --resume --out", await stderr);
        Assert.NotNull(TrainingCheckpoint(outDir));
    }

    [Fact]
    public async Task SigtermBeforeTheFirstScheduledCheckpointWritesOneAndResumeFinishes()
    {
        // Slurm's SIGTERM before the first scheduled checkpoint (step 1000): the step in progress is checkpointed.
        string config = Config("term.yaml", Resumable.Replace("max_steps: 40", "max_steps: 30").Replace("checkpoint_every: 5", "checkpoint_every: 1000")
            .Replace("log_every: 5", "log_every: 1"));
        string outDir = Path.Combine(root, "terminated");
        var start = new ProcessStartInfo(Repo.Cli) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string arg in (string[])["pretrain", "--config", config, "--out", outDir, "--threads", "2"]) start.ArgumentList.Add(arg);
        foreach (var (key, value) in Home) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var stderr = process.StandardError.ReadToEndAsync();
        string? line;
        while ((line = process.StandardOutput.ReadLine()) is not null && !line.Contains("step ", StringComparison.Ordinal)) { }
        Assert.True(line is not null, "the run logged no step");
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString()])) kill.WaitForExit();
        _ = process.StandardOutput.ReadToEnd();
        Assert.True(process.WaitForExit(60_000), "the run did not stop after SIGTERM");
        string said = await stderr;
        output.WriteLine(said);
        Assert.Equal(143, process.ExitCode);
        Assert.Matches("interrupted \\(SIGTERM\\) after step [0-9]+; checkpoint: ", said);
        long? step = LatestStep(outDir);
        Assert.True(step is > 0 and < 30, $"the checkpoint is at step {step}");
        var resumed = Pretrain("--config", config, "--out", outDir, "--threads", "2", "--resume");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
        Assert.Contains($"resuming from {TrainingCheckpointPath(outDir, step!.Value)} at step {step}", resumed.Stdout + resumed.Stderr);
        Assert.Contains("pretrained 30 steps", resumed.Stdout);
    }

    [Fact]
    public void BadArgumentsCreateNoOutputFolderAndNoRun()
    {
        string config = Config("ok.yaml", Resumable);
        string mlruns = Path.Combine(root, "mlruns");
        var cases = new (string[] Args, string Message)[]
        {
            (["--max-steps", "0"], "max_steps"),
            (["--precision", "fp8"], "precision"),
            (["--precision", "fp16"], "fp16 needs a CUDA device"),
            (["--device", "tpu"], "tpu"),
            (["--resume"], "--resume: no checkpoint in"),
        };
        foreach (var (args, message) in cases)
        {
            string outDir = Path.Combine(root, "never");
            var result = Pretrain(["--config", config, "--out", outDir, "--tracking-uri", mlruns, .. args]);
            Assert.True(result.ExitCode == 2, $"{string.Join(' ', args)}: exit {result.ExitCode}: {result.Stderr}");
            Assert.Contains(message, result.Stderr);
            Assert.Single(result.Stderr.Trim().Split('\n'));
            Assert.False(Directory.Exists(outDir), $"{string.Join(' ', args)} created {outDir}");
            Assert.False(Directory.Exists(mlruns), $"{string.Join(' ', args)} created an MLflow store");
        }
    }

    [Fact]
    public void Bf16ThatFallsBackIsRecordedAsFp32BesideTheRequest()
    {
        string config = Config("fallback.yaml", Resumable.Replace("max_steps: 40", "max_steps: 2"));
        string outDir = Path.Combine(root, "fallback");
        var result = Repo.Run(Repo.Cli, ["pretrain", "--config", config, "--out", outDir, "--precision", "bf16"], timeoutSeconds: 300,
            environment: new Dictionary<string, string>(Home) { ["MEDFORMER_FAST_BF16"] = "0" });
        output.WriteLine(result.Stdout + result.Stderr);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("training in fp32", result.Stdout + result.Stderr);
        Assert.Contains("(fp32, bf16 requested)", result.Stdout);
        var state = System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(TrainingCheckpoint(outDir)!, "trainer.json")))!;
        Assert.Equal("fp32", (string)state["precision"]!);
        Assert.Equal("bf16", (string)state["requested_precision"]!);

        var fp16 = Repo.Run(Repo.Cli, ["pretrain", "--config", config, "--out", Path.Combine(root, "fp16"), "--precision", "fp16"], timeoutSeconds: 300,
            environment: new Dictionary<string, string>(Home) { ["MEDFORMER_FAST_BF16"] = "0" });
        Assert.Equal(2, fp16.ExitCode);
        Assert.DoesNotContain("use bf16", fp16.Stderr);
        Assert.Contains("use fp32", fp16.Stderr);
    }

    static string TrainingCheckpointPath(string folder, long step) => global::Medformer.Training.TrainingCheckpoint.PathOf(folder, step);

    static string? TrainingCheckpoint(string folder) => global::Medformer.Training.TrainingCheckpoint.Latest(folder);

    static long? LatestStep(string folder) =>
        global::Medformer.Training.TrainingCheckpoint.Latest(folder) is { } latest ? long.Parse(Path.GetFileName(latest)["checkpoint-".Length..]) : null;

    /// <summary>Whether this process ignores SIGINT (bit 1 of SigIgn in /proc/self/status), as background jobs of a shell do.</summary>
    internal static bool SigIntIgnored()
    {
        string? line = File.ReadLines("/proc/self/status").FirstOrDefault(l => l.StartsWith("SigIgn:", StringComparison.Ordinal));
        return line is not null && (Convert.ToUInt64(line["SigIgn:".Length..].Trim(), 16) & 0b10) != 0;
    }

    static bool TrainingCheckpointExists(string folder) =>
        Directory.Exists(folder) && Directory.EnumerateDirectories(folder, "checkpoint-*").Any(d => File.Exists(Path.Combine(d, "trainer.json")));
}
