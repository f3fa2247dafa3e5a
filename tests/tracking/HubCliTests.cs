using System.Diagnostics;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// <c>medformer download NAME|URL</c> end to end against a server on 127.0.0.1 that serves a manifest and a packed
/// model: progress, the model folder, the cache, two processes at once, and the errors.
/// </summary>
public sealed class HubCliTests(ITestOutputHelper output) : IDisposable
{
    readonly HubFiles files = new();

    public void Dispose() => files.Dispose();

    ProcessStartInfo Start(params string[] args)
    {
        var start = new ProcessStartInfo(Repo.Cli) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = files.Folder };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        start.Environment["MEDFORMER_HOME"] = files.Home;
        start.Environment.Remove("MEDFORMER_HUB");
        start.Environment.Remove("MEDFORMER_HUB_SHA256");
        return start;
    }

    (int Code, string Stdout, string Stderr) Finish(Process process, string what)
    {
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(60_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"{what} ran past 60 s");
        }
        output.WriteLine($"{what} -> {process.ExitCode}\n{stdout.Result}{stderr.Result}");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    (int Code, string Stdout, string Stderr) Run(params string[] args)
    {
        using var process = Process.Start(Start(args))!;
        return Finish(process, "medformer " + string.Join(' ', args));
    }

    // The manifest is served over plain http on loopback, so it is pinned by its SHA-256 as any http manifest must be.
    (TestHttpServer Server, byte[] Packed, string Pin) Serve(TimeSpan? trickle = null)
    {
        byte[] packed = files.Packed("tar");
        string manifest = HubFiles.Manifest(HubFiles.Entry("tiny", new Uri("http://placeholder/tiny.tar"), packed));
        TestHttpServer? server = null;
        server = new TestHttpServer(r => r.Path switch
        {
            "/hub.json" => new TestResponse(200, System.Text.Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server!.BaseUrl))),
            "/tiny.tar" => TestResponse.File(packed, r) with { Trickle = trickle },
            _ => new TestResponse(404, []),
        });
        return (server, packed, HubFiles.Sha256(System.Text.Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server.BaseUrl))));
    }

    [Fact]
    public void DownloadsANamedCheckpointIntoTheCacheThenHasNothingToDo()
    {
        var (server, packed, pin) = Serve();
        using (server)
        {
            var first = Run("download", "tiny", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin);
            Assert.True(first.Code == 0, first.Stderr);
            Assert.Contains("100%", first.Stdout);
            string model = Path.Combine(files.Home, "hub", "tiny", HubFiles.Sha256(packed), "model");
            Assert.Contains($"SHA-256 {HubFiles.Sha256(packed)} verified", first.Stdout);
            Assert.Contains($"model folder {model} (d=64, depth 2)", first.Stdout);
            Assert.Equal(files.Weights, File.ReadAllBytes(Path.Combine(model, "model.safetensors")));

            var again = Run("download", "tiny", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin);
            Assert.Equal(0, again.Code);
            Assert.Contains("already in the cache, nothing to do", again.Stdout);
            Assert.Single(server.Requests, r => r.Path == "/tiny.tar");

            var list = Run("download", "--list", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin);
            Assert.Equal(0, list.Code);
            Assert.Contains("tiny", list.Stdout);
            Assert.Contains("a test model", list.Stdout);
        }
    }

    [Fact]
    public void TwoProcessesDownloadingTheSameCheckpointBothSucceedWithOneCopy()
    {
        var (server, packed, pin) = Serve(trickle: TimeSpan.FromMilliseconds(20));
        using (server)
        {
            string[] args = ["download", "tiny", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin];
            using var a = Process.Start(Start(args))!;
            using var b = Process.Start(Start(args))!;
            var (ra, rb) = (Finish(a, "first"), Finish(b, "second"));
            Assert.True(ra.Code == 0 && rb.Code == 0, ra.Stderr + rb.Stderr);
            Assert.Single(server.Requests, r => r.Path == "/tiny.tar");
            Assert.Single(new[] { ra.Stdout, rb.Stdout }, s => s.Contains("already in the cache"));
            Assert.Contains("another process is fetching it; waiting", ra.Stdout + rb.Stdout);
            string entry = Path.Combine(files.Home, "hub", "tiny", HubFiles.Sha256(packed));
            Assert.Equal(["model"], Directory.EnumerateDirectories(entry).Select(Path.GetFileName));
            Assert.Equal([".lock"], Directory.EnumerateFiles(entry).Select(Path.GetFileName));
        }
    }

    [Fact]
    public void BadNamesAndChecksumsAreRefusedAndLeaveNothing()
    {
        var (server, packed, pin) = Serve();
        using (server)
        {
            var unknown = Run("download", "huge", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin);
            Assert.Equal(2, unknown.Code);
            Assert.Contains("no checkpoint 'huge' in", unknown.Stderr);
            Assert.Contains("it lists tiny", unknown.Stderr);

            var builtIn = Run("download", "tiny");
            Assert.Equal(2, builtIn.Code);
            Assert.Contains("no checkpoint 'tiny' in the built-in hub manifest (it lists none)", builtIn.Stderr);

            string wrong = new string('0', 64);
            var mismatch = Run("download", server.BaseUrl + "/tiny.tar", "--sha256", wrong);
            Assert.Equal(1, mismatch.Code);
            Assert.Contains($"SHA-256 mismatch: expected {wrong}, got {HubFiles.Sha256(packed)}", mismatch.Stderr);
            Assert.DoesNotContain(Directory.EnumerateFiles(Path.Combine(files.Home, "hub"), "*", SearchOption.AllDirectories), f => !f.EndsWith(".lock"));
        }
    }

    [Fact]
    public void CommandsThatTakeACheckpointResolveAHubName()
    {
        var (server, packed, pin) = Serve();
        using (server)
        {
            var start = Start("predict", "--checkpoint", "tiny", "--out", Path.Combine(files.Folder, "predicted"), "any.npz");
            start.Environment["MEDFORMER_HUB"] = server.BaseUrl + "/hub.json";
            start.Environment["MEDFORMER_HUB_SHA256"] = pin;
            using var process = Process.Start(start)!;
            var result = Finish(process, "medformer predict --checkpoint tiny");
            // The name resolved to the cached model folder, which is pretrained, not fine-tuned: predict says so.
            string model = Path.Combine(files.Home, "hub", "tiny", HubFiles.Sha256(packed), "model");
            Assert.Equal(1, result.Code);
            Assert.Contains("tiny: from the checkpoint hub", result.Stderr);
            Assert.Contains($"{model}: no head.json", result.Stderr);
            Assert.Single(server.Requests, r => r.Path == "/tiny.tar");

            var unknown = Start("predict", "--checkpoint", "nosuch", "any.npz");
            unknown.Environment["MEDFORMER_HUB"] = server.BaseUrl + "/hub.json";
            unknown.Environment["MEDFORMER_HUB_SHA256"] = pin;
            using var second = Process.Start(unknown)!;
            var refused = Finish(second, "medformer predict --checkpoint nosuch");
            Assert.NotEqual(0, refused.Code);
            Assert.Contains("'nosuch' is neither a checkpoint folder nor a checkpoint in", refused.Stderr);
        }
    }
}
