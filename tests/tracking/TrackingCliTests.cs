using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json.Nodes;
using System.Xml.Linq;
using Medformer.Tests.Pretrain;
using Medformer.Tracking;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>`medformer pretrain` logs its run (finished, killed, interrupted, failed), and `medformer runs` reads and plots runs.</summary>
public sealed class TrackingCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-tracking-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Mlruns => Path.Combine(root, "mlruns");

    // These runs go to MLflow's file store, ./mlruns in the working folder, by MLFLOW_TRACKING_URI (the default,
    // sqlite:///mlflow.db, is SqliteTrackingTests'), so the file layout stays tested through the whole CLI.
    static readonly Dictionary<string, string> Environment = new() { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "mlruns",
        ["MLFLOW_EXPERIMENT_NAME"] = "" };

    string Config(string name, long steps, string corpus = "{ phantom: 2d }")
    {
        string path = Path.Combine(root, name);
        File.WriteAllText(path, $$"""
            model: tiny
            corpora: [{{corpus}}]
            objectives: { inpainting: {} }
            batch: { size: 8, workers: 1 }
            schedule: { max_steps: {{steps}}, warmup_steps: 1 }
            log_every: 2
            checkpoint_every: 2
            """);
        return path;
    }

    Repo.Result Cli(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, workingDirectory: root, timeoutSeconds: 300, environment: Environment);
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }

    Process StartPretrain(string config, string outDir, bool restoreSigInt = false)
    {
        var start = new ProcessStartInfo(restoreSigInt && PretrainCliTests.SigIntIgnored() ? "/usr/bin/python3" : Repo.Cli)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = root,
        };
        if (start.FileName != Repo.Cli)
            foreach (string arg in (string[])["-c", "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
                Repo.Cli]) start.ArgumentList.Add(arg);
        foreach (string arg in (string[])["pretrain", "--config", config, "--out", outDir, "--threads", "1", "--run-name",
            Path.GetFileName(outDir)]) start.ArgumentList.Add(arg);
        foreach (var (key, value) in Environment) start.Environment[key] = value;
        return Process.Start(start)!;
    }

    static JsonObject RunNamed(JsonObject store, string name) =>
        store["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()).Cast<JsonObject>().Single(r => (string)r["run_name"]! == name);

    [Fact]
    public void PretrainLogsItsRunToTheFileStoreMlflowTrackingUriNames()
    {
        var result = Cli("pretrain", "--config", Config("run.yaml", 4), "--out", "runs/first", "--threads", "2");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Matches($"mlflow: run [0-9a-f]{{32}} \\(FINISHED\\) in {Mlruns}", result.Stdout);

        var run = RunNamed(MlflowReference.ReadClean(Mlruns), "first");
        Assert.Equal(3, (int)run["status"]!);
        Assert.NotNull(run["end_time"]);
        Assert.Equal("tiny", (string)run["params"]!["model"]!);
        Assert.Equal("4", (string)run["params"]!["schedule.max_steps"]!);
        Assert.Equal("0.001", (string)run["params"]!["optimizer.lr"]!);
        Assert.Equal("cpu", (string)run["params"]!["device"]!);
        Assert.Equal("medformer pretrain", (string)run["tags"]!["mlflow.source.name"]!);
        Assert.Equal(Path.Combine(root, "runs", "first"), (string)run["tags"]!["medformer.out"]!);
        Assert.Equal([2L, 4], run["metrics"]!["loss"]!.AsArray().Select(p => (long)p![2]!));
        Assert.Equal(2, run["metrics"]!["loss_inpainting"]!.AsArray().Count);
        Assert.Contains("model/model.safetensors", run["artifacts"]!.AsArray().Select(a => (string)a!));
        Assert.Equal(File.ReadAllBytes(Path.Combine(root, "runs", "first", "model", "model.safetensors")),
            File.ReadAllBytes(Path.Combine(Mlruns, (string)run["experiment_id"]!, (string)run["run_id"]!, "artifacts", "model", "model.safetensors")));

        var list = Cli("runs", "list", "--json");
        Assert.Equal(0, list.ExitCode);
        var experiment = JsonNode.Parse(list.Stdout)!["experiments"]!.AsArray().Single()!;
        Assert.Equal("pretrain", (string)experiment["name"]!);
        Assert.Equal("FINISHED", (string)experiment["runs"]![0]!["status"]!);
        var show = Cli("runs", "show", "first");
        Assert.Equal(0, show.ExitCode);
        Assert.Contains("status FINISHED", show.Stdout);
        Assert.Contains("optimizer.lr", show.Stdout);
    }

    [Fact]
    public void AKilledRunStaysRunningAndReadableAndCtrlCMarksItKilled()
    {
        string config = Config("long.yaml", 400);
        using var killed = StartPretrain(config, Path.Combine(root, "killed"));
        using var interrupted = StartPretrain(config, Path.Combine(root, "interrupted"), restoreSigInt: true);
        foreach (var p in new[] { killed, interrupted })
        {
            _ = p.StandardOutput.ReadToEndAsync();
            _ = p.StandardError.ReadToEndAsync();
        }
        var clock = Stopwatch.StartNew();
        // Wait until both runs have logged a point of their loss.
        while (clock.Elapsed < TimeSpan.FromSeconds(180) && (!Directory.Exists(Mlruns) || Directory.GetFiles(Mlruns, "loss",
            SearchOption.AllDirectories).Length < 2))
            Thread.Sleep(100);
        Assert.Equal(2, Directory.GetFiles(Mlruns, "loss", SearchOption.AllDirectories).Length);
        killed.Kill();
        using (var kill = Process.Start("kill", ["-INT", interrupted.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
        Assert.True(killed.WaitForExit(30_000));
        Assert.True(interrupted.WaitForExit(60_000), "the run did not stop after SIGINT");
        Assert.Equal(130, interrupted.ExitCode);

        var store = MlflowReference.ReadClean(Mlruns);
        var dead = RunNamed(store, "killed");
        Assert.Equal(1, (int)dead["status"]!);  // RUNNING: nobody was left to say otherwise
        Assert.Null(dead["end_time"]);
        Assert.NotEmpty(dead["metrics"]!["loss"]!.AsArray());
        Assert.Equal("tiny", (string)dead["params"]!["model"]!);
        var stopped = RunNamed(store, "interrupted");
        Assert.Equal(5, (int)stopped["status"]!);  // KILLED
        Assert.NotNull(stopped["end_time"]);
        Assert.Contains("RUNNING", Cli("runs", "list").Stdout);
    }

    [Fact]
    public async Task AResumedPretrainingContinuesItsMlflowRun()
    {
        string config = Config("resumed.yaml", 40);
        File.WriteAllText(config, File.ReadAllText(config).Replace("checkpoint_every: 2", "checkpoint_every: 1000"));
        string outDir = Path.Combine(root, "resumed");
        using (var first = StartPretrain(config, outDir))
        {
            var stderr = first.StandardError.ReadToEndAsync();
            string? line;
            while ((line = first.StandardOutput.ReadLine()) is not null && !line.Contains("step ", StringComparison.Ordinal)) { }
            using (var kill = Process.Start("kill", ["-TERM", first.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)])) kill.WaitForExit();
            _ = first.StandardOutput.ReadToEnd();
            Assert.True(first.WaitForExit(60_000), "the run did not stop after SIGTERM");
            output.WriteLine(await stderr);
            Assert.Equal(143, first.ExitCode);
        }
        var killed = RunNamed(MlflowReference.ReadClean(Mlruns), "resumed");
        Assert.Equal(5, (int)killed["status"]!);  // KILLED
        var resumed = Cli("pretrain", "--config", config, "--out", outDir, "--threads", "2", "--resume", "--run-name", "resumed");
        Assert.True(resumed.ExitCode == 0, resumed.Stderr);

        var runs = MlflowReference.ReadClean(Mlruns)["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()).ToList();
        var run = (JsonObject)Assert.Single(runs)!;
        Assert.Equal((string)killed["run_id"]!, (string)run["run_id"]!);
        Assert.Equal(3, (int)run["status"]!);  // FINISHED
        var steps = run["metrics"]!["loss"]!.AsArray().Select(p => (long)p![2]!).ToList();  // [timestamp, value, step]
        Assert.Contains(40L, steps);
        Assert.True(steps.Min() < 40 && steps.Count == steps.Distinct().Count(), string.Join(",", steps));
        Assert.NotNull(run["tags"]!["medformer.resumed_from"]);
    }

    [Fact]
    public void AFailedStartMarksTheRunFailedAndNoneLogsNothing()
    {
        // A file named in the config that is missing is a bad argument: refused before any run exists.
        var missing = Cli("pretrain", "--config", Config("missing.yaml", 4, "{ medmnist: /nonexistent/pathmnist.npz }"), "--out", "runs/missing");
        Assert.Equal(2, missing.ExitCode);
        Assert.False(Directory.Exists(Mlruns));
        // One that is there but broken is found when the job opens it: the run exists by then, and is marked FAILED.
        string broken = Path.Combine(root, "broken.npz");
        File.WriteAllText(broken, "not a zip archive");
        string bad = Config("bad.yaml", 4, $"{{ medmnist: {broken} }}");
        var result = Cli("pretrain", "--config", bad, "--out", "runs/bad");
        Assert.NotEqual(0, result.ExitCode);
        Assert.Equal(4, (int)RunNamed(MlflowReference.ReadClean(Mlruns), "bad")["status"]!);  // FAILED

        Assert.NotEqual(0, Cli("pretrain", "--config", bad, "--out", "runs/untracked", "--tracking-uri", "none").ExitCode);
        Assert.Single(MlflowReference.ReadClean(Mlruns)["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()));
        var wrong = Cli("pretrain", "--tracking-uri", "postgresql://db/mlflow", "--out", "runs/x");
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains("--tracking-uri 'postgresql://db/mlflow'", wrong.Stderr);
    }

    [Fact]
    public void APretrainingWhoseServerIsDownFinishesAndItsSpoolReplaysEverything()
    {
        string url;
        using (var gone = new FakeMlflowServer()) url = gone.Url;
        var env = new Dictionary<string, string>(Environment) { ["MEDFORMER_TRACKING_FLUSH_SECONDS"] = "1", ["MLFLOW_TRACKING_TOKEN"] = "t0ken" };
        var result = Repo.Run(Repo.Cli, ["pretrain", "--config", Config("rest.yaml", 4), "--out", "runs/remote", "--threads", "2", "--tracking-uri", url],
            workingDirectory: root, timeoutSeconds: 300, environment: env);
        output.WriteLine(result.Stdout + result.Stderr);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.False(Directory.Exists(Mlruns));
        string spool = Directory.GetFiles(Path.Combine(root, "runs", "remote", "mlflow-spool")).Single();
        Assert.Contains($"kept in {spool}; send them with: medformer runs replay {spool}", result.Stderr);

        using var server = new FakeMlflowServer();
        var replay = Repo.Run(Repo.Cli, ["runs", "replay", spool, "--tracking-uri", server.Url], workingDirectory: root, environment: env);
        Assert.True(replay.ExitCode == 0, replay.Stderr);
        Assert.False(File.Exists(spool));
        MlflowServerState.FakeRun run;
        lock (server.State.Gate) run = server.State.Runs.Values.Single();
        Assert.Equal("FINISHED", (string)run.Info["status"]!);
        Assert.Equal("remote", (string)run.Info["run_name"]!);
        Assert.Equal("tiny", run.Params["model"]);
        Assert.Equal([2L, 4], run.Metrics.Where(m => (string)m["key"]! == "loss").Select(m => (long)m["step"]!));
        lock (server.State.Gate)
        {
            Assert.Contains($"1/{run.Info["run_id"]}/artifacts/model/model.safetensors", server.State.Artifacts.Keys);
            Assert.All(server.State.Requests, r => Assert.Equal("Bearer t0ken", r.Authorization));
        }
        var show = Cli("runs", "show", "remote", "--tracking-uri", server.Url);
        Assert.Equal(0, show.ExitCode);
        Assert.Contains("status FINISHED", show.Stdout);
    }

    void TwoRuns()
    {
        foreach (var (name, lr, scale) in new[] { ("alpha", 0.1, 1.0), ("beta", 0.01, 0.5) })
        {
            using var run = Mlflow.StartRun(new MlflowRunOptions { Experiment = "sweep", RunName = name, TrackingUri = Mlruns })!;
            run.LogParams(new Dictionary<string, object?> { ["lr"] = lr, ["model"] = "tiny" });
            for (int step = 10; step <= 300; step += 10)
                run.LogMetrics(new Dictionary<string, double> { ["loss"] = scale * 2 / Math.Sqrt(step), ["acc"] = 1 - scale / Math.Sqrt(step) }, step);
            run.End();
        }
    }

    [Fact]
    public void RunsCompareMarksDifferingParamsAndPlotsPngAndSvg()
    {
        TwoRuns();
        string png = Path.Combine(root, "plots", "loss.png"), svg = Path.Combine(root, "plots", "loss.svg");
        var result = Cli("runs", "compare", "alpha", "beta", "--metric", "loss", "acc", "--plot", png, "--plot", svg, "--tracking-uri", Mlruns);
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("* lr", result.Stdout);
        Assert.Contains("  model", result.Stdout);
        Assert.Contains("loss (best min)", result.Stdout);
        Assert.Contains("acc (best max)", result.Stdout);
        Assert.Contains("1 param differs", result.Stdout.Replace("1 param differ ", "1 param differs ", StringComparison.Ordinal));

        // The PNG decodes: signature, IHDR, and IDAT inflating to exactly height rows of (filter byte + width pixels).
        byte[] bytes = File.ReadAllBytes(png);
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 13, 10, 26, 10 }, bytes[..8]);
        int width = 0, height = 0, channels = 0;
        var idat = new MemoryStream();
        for (int at = 8; at < bytes.Length;)
        {
            int length = BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(at));
            string type = System.Text.Encoding.ASCII.GetString(bytes, at + 4, 4);
            var data = bytes.AsSpan(at + 8, length);
            if (type == "IHDR")
            {
                (width, height) = (BinaryPrimitives.ReadInt32BigEndian(data), BinaryPrimitives.ReadInt32BigEndian(data[4..]));
                Assert.Equal(8, data[8]);  // bit depth
                channels = data[9] switch { 2 => 3, 6 => 4, 0 => 1, 4 => 2, _ => throw new InvalidDataException($"colour type {data[9]}") };
            }
            if (type == "IDAT") idat.Write(data);
            at += 12 + length;
        }
        Assert.Equal((MetricPlot.Width, MetricPlot.Height), (width, height));
        idat.Position = 0;
        using var inflated = new MemoryStream();
        using (var z = new ZLibStream(idat, CompressionMode.Decompress)) z.CopyTo(inflated);
        Assert.Equal((long)height * (1 + width * channels), inflated.Length);
        Assert.True(inflated.ToArray().Distinct().Count() > 10, "the image is blank");

        // The SVG is XML with an <svg> root of the same size, the lines and the legend.
        var document = XDocument.Load(svg);
        Assert.Equal("svg", document.Root!.Name.LocalName);
        Assert.Equal(MetricPlot.Width.ToString(System.Globalization.CultureInfo.InvariantCulture), (string?)document.Root.Attribute("width"));
        Assert.Contains(document.Descendants(), e => e.Name.LocalName is "path" or "polyline" or "line");
        Assert.Contains(document.Descendants(), e => e.Name.LocalName == "text" && e.Value.Contains("alpha", StringComparison.Ordinal));
        // One panel per metric, each titled: loss and acc on axes of their own.
        Assert.Contains(document.Descendants(), e => e.Name.LocalName == "text" && e.Value.Trim() == "loss");
        Assert.Contains(document.Descendants(), e => e.Name.LocalName == "text" && e.Value.Trim() == "acc");

        var json = Cli("runs", "compare", "alpha", "beta", "--json", "--tracking-uri", Mlruns);
        Assert.Equal(0, json.ExitCode);
        var compared = JsonNode.Parse(json.Stdout)!;
        Assert.Equal(["lr"], compared["differing_params"]!.AsArray().Select(k => (string)k!));
        Assert.Equal(2.0 / Math.Sqrt(300), (double)compared["runs"]![0]!["metrics"]!["loss"]!["best"]!, 12);
    }

    [Fact]
    public void RunsCommandsNameWhatIsWrong()
    {
        TwoRuns();
        var missing = Cli("runs", "show", "gamma", "--tracking-uri", Mlruns);
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("run 'gamma': no run of that id or name", missing.Stderr);
        var gif = Cli("runs", "compare", "alpha", "beta", "--plot", "x.gif", "--tracking-uri", Mlruns);
        Assert.Equal(2, gif.ExitCode);
        Assert.Contains("--plot x.gif: the file must end in .png or .svg", gif.Stderr);
        var empty = Cli("runs", "list", "--tracking-uri", Path.Combine(root, "nothing"));
        Assert.Equal(2, empty.ExitCode);
        Assert.Contains("no MLflow runs at", empty.Stderr);
    }

    [Fact]
    public void RunsListPutsHeadlineMetricsFirstSaysWhatItElidesAndNamesRunsUnambiguously()
    {
        for (int i = 0; i < 2; i++)
        {
            using var run = Mlflow.StartRun(new MlflowRunOptions { Experiment = "tune", RunName = "same", TrackingUri = Mlruns })!;
            run.LogMetrics(new Dictionary<string, double>
            {
                ["a_first"] = 1, ["b"] = 2, ["c"] = 3, ["d"] = 4, ["e"] = 5, ["lr"] = 1e-3, ["loss"] = 0.5, ["val_acc"] = 0.7, ["test_acc"] = 0.8 + i / 100.0,
            }, 10);
            run.End();
        }
        var list = Cli("runs", "list", "--tracking-uri", Mlruns);
        Assert.Equal(0, list.ExitCode);
        string row = list.Stdout.Split('\n').First(l => l.Contains("test_acc 0.81", StringComparison.Ordinal));
        Assert.True(row.IndexOf("test_acc", StringComparison.Ordinal) < row.IndexOf("val_acc", StringComparison.Ordinal)
                    && row.IndexOf("val_acc", StringComparison.Ordinal) < row.IndexOf("loss", StringComparison.Ordinal)
                    && row.IndexOf("loss", StringComparison.Ordinal) < row.IndexOf("a_first", StringComparison.Ordinal), row);
        Assert.Contains("… 3 more (runs show ", row);
        Assert.Contains("same (1 of 2 so named)", row);

        var show = Cli("runs", "show", "same", "--tracking-uri", Mlruns);
        Assert.Equal(2, show.ExitCode);
        Assert.Contains("run 'same': 2 runs have that name (", show.Stderr);
        Assert.Contains("give an id or a unique prefix of one", show.Stderr);
    }
}
