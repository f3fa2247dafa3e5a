using System.Text;
using System.Text.Json.Nodes;
using Medformer.Tracking;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// Spool files and tracking URIs from someone else: replay sends only to the server the user names and only files
/// of the run's own folder; spool files are the user's alone; credentials in a URI are used, and never printed or stored.
/// </summary>
public sealed class TrackingHostileTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-tracking-hostile-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly RestOptions Fast = new()
    {
        RequestTimeout = TimeSpan.FromSeconds(2),
        FirstBackoff = TimeSpan.FromMilliseconds(20),
        MaxBackoff = TimeSpan.FromMilliseconds(200),
        FlushTimeout = TimeSpan.FromMilliseconds(300),
        SendInterval = TimeSpan.FromMilliseconds(50),
        Token = null,
        Username = null,
        Password = null,
    };

    /// <summary>A spool file as a run on <paramref name="server"/> leaves it in OUT/mlflow-spool, with extra lines appended.</summary>
    string Spool(string server, params JsonObject[] extra)
    {
        string folder = Path.Combine(root, "run", "mlflow-spool");
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, "mlflow-spool-crafted.jsonl");
        var lines = new List<JsonObject>
        {
            new() { ["op"] = "start", ["server"] = server, ["experiment"] = "x", ["run_name"] = "r", ["user"] = "u", ["start_time"] = 1,
                ["tags"] = new JsonObject() },
            new() { ["seq"] = 1, ["metric"] = new JsonObject { ["key"] = "loss", ["value"] = 1.0, ["timestamp"] = 1, ["step"] = 1 } },
        };
        lines.AddRange(extra);
        File.WriteAllLines(path, lines.Select(l => l.ToJsonString()));
        return path;
    }

    Repo.Result Cli(IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, workingDirectory: root, timeoutSeconds: 120, environment: environment);
        output.WriteLine(result.Stdout + result.Stderr);
        return result;
    }

    static int RequestCount(FakeMlflowServer server)
    {
        lock (server.State.Gate) return server.State.Requests.Count;
    }

    [Fact]
    public void ReplayNeverSendsToTheServerASpoolFileNamesOnItsOwn()
    {
        using var named = new FakeMlflowServer();
        using var mine = new FakeMlflowServer();
        string spool = Spool(named.Url);
        var env = new Dictionary<string, string> { ["MLFLOW_TRACKING_TOKEN"] = "t0ken", ["MLFLOW_TRACKING_URI"] = "" };

        var refused = Cli(env, "runs", "replay", spool);
        Assert.Equal(2, refused.ExitCode);
        Assert.Contains("no server given; pass --tracking-uri", refused.Stderr);
        Assert.Contains(named.Url, refused.Stderr);
        Assert.Equal(0, RequestCount(named));

        var sent = Cli(env, "runs", "replay", spool, "--tracking-uri", mine.Url);
        Assert.True(sent.ExitCode == 0, sent.Stderr);
        Assert.Equal(0, RequestCount(named));
        lock (mine.State.Gate) Assert.Single(mine.State.Runs.Values);
    }

    [Fact]
    public void ReplayRefusesArtifactsOutsideTheRunsFolderBeforeSendingAnything()
    {
        using var server = new FakeMlflowServer();
        string outside = Path.Combine(root, "secret.txt");
        File.WriteAllText(outside, "not the run's");
        string link = Path.Combine(root, "run", "innocent.txt");
        foreach (var (path, name) in new[] { (outside, "absolute"), ("/etc/hostname", "system"), (link, "link") })
        {
            string spool = Spool(server.Url, new JsonObject
            {
                ["seq"] = 2, ["artifact"] = new JsonObject { ["local"] = path, ["path"] = "stolen", ["folder"] = false },
            });
            if (name == "link" && !File.Exists(link)) File.CreateSymbolicLink(link, outside);
            var error = Assert.Throws<InvalidDataException>(() => Mlflow.Replay(spool, TrackingUri.Parse(server.Url), Fast));
            Assert.Contains("is outside the run's folder", error.Message);
            Assert.Equal(0, RequestCount(server));
        }
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void SpoolFilesAreTheUsersAlone()
    {
        string url;
        using (var gone = new FakeMlflowServer()) url = gone.Url;
        string folder = Path.Combine(root, "spool");
        var run = Mlflow.StartRun(new MlflowRunOptions { TrackingUri = url, SpoolDirectory = folder, Rest = Fast, Warn = null })!;
        run.LogMetric("loss", 1, 1);
        var outcome = run.End();
        run.Dispose();
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(outcome.SpoolFile!));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
    }

    [Fact]
    public void CredentialsInTheUriAreUsedForBasicAuthAndNeverPrintedOrStored()
    {
        using var server = new FakeMlflowServer(fault: request => request.Endpoint == "runs/log-batch" ? new MlflowFault(400,
            "INVALID_PARAMETER_VALUE") : null);
        string uri = server.Url.Replace("http://", "http://ada:s3cr%40t@");
        var parsed = TrackingUri.Parse(uri);
        Assert.Equal("ada", parsed.Username);
        Assert.Equal("s3cr@t", parsed.Password);
        Assert.DoesNotContain("s3cr", parsed.Text);
        Assert.DoesNotContain("s3cr", parsed.ToString());

        string spoolDir = Path.Combine(root, "spool");
        var run = Mlflow.StartRun(new MlflowRunOptions { TrackingUri = uri, SpoolDirectory = spoolDir, Rest = Fast, Warn = null })!;
        run.LogMetric("loss", 1, 1);
        var outcome = run.End();
        run.Dispose();
        lock (server.State.Gate)
            Assert.All(server.State.Requests, r => Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("ada:s3cr@t")), r.Authorization));
        Assert.NotNull(outcome.Warning);  // the refused batch: the message names the server, without the password
        Assert.DoesNotContain("s3cr", outcome.Warning);
        foreach (string file in Directory.GetFiles(spoolDir)) Assert.DoesNotContain("s3cr", File.ReadAllText(file));

        var bad = Cli(new Dictionary<string, string> { ["MLFLOW_TRACKING_URI"] = "" }, "runs", "list", "--tracking-uri", "http://ada:s3cr3t@[bad");
        Assert.Equal(2, bad.ExitCode);
        Assert.DoesNotContain("s3cr3t", bad.Stderr);
        Assert.Contains("ada:***@", bad.Stderr);
    }
}
