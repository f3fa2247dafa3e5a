using System.Diagnostics;
using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// <c>medformer download medmnist</c> end to end: the built command against a local server. The published MD5s
/// belong to files this server cannot serve, so the test points MEDFORMER_MEDMNIST_REGISTRY at a registry of the
/// same schema whose pathmnist entry carries the MD5 of a file the test made; the host comes from --mirror (or
/// MEDFORMER_MEDMNIST_URL), exactly as a user with a private mirror would run it.
/// </summary>
public sealed class DownloadCommandTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-download-cli-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    static string Cli
    {
        get
        {
            string path = Path.Combine(Repo.CliDirectory, "medformer");
            Assert.True(File.Exists(path), $"{path} is missing: build the solution (dotnet build Medformer.sln -c Release) first");
            return path;
        }
    }

    (int Code, string Stdout, string Stderr) Run(IDictionary<string, string?> environment, params string[] args)
    {
        var start = new ProcessStartInfo(Cli) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = folder };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        start.Environment["MEDFORMER_HOME"] = Path.Combine(folder, "home");
        start.Environment.Remove(MedMnistRegistry.MirrorVariable);
        start.Environment.Remove(MedMnistRegistry.OverrideVariable);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(60_000))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"medformer {string.Join(' ', args)} ran past 60 s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    /// <summary>A small pathmnist-layout file, and a registry giving pathmnist its MD5 and length.</summary>
    (byte[] File, string Registry) Prepare()
    {
        string made = Path.Combine(folder, "made.npz");
        using (var scope = NewDisposeScope())
        {
            var arrays = new Dictionary<string, Tensor>();
            foreach (var (split, n) in new[] { ("train", 6), ("val", 2), ("test", 3) })
            {
                arrays[$"{split}_images"] = randint(0, 256, [n, 28, 28, 3], ScalarType.Byte, generator: new Generator(3));
                arrays[$"{split}_labels"] = arange(n, ScalarType.Byte).remainder(9).unsqueeze(1);
            }
            Npz.Write(made, arrays);
        }
        byte[] bytes = File.ReadAllBytes(made);
        string registry = Path.Combine(folder, "registry.json");
        var subset = new Dictionary<string, object>
        {
            ["name"] = "pathmnist", ["dimensionality"] = "2d", ["organ"] = "colon", ["modality"] = "pathology", ["channels"] = 3,
            ["task"] = "multi-class", ["labels"] = "abcdefghi".Select(c => c.ToString()).ToArray(),
            ["splits"] = new Dictionary<string, int> { ["train"] = 6, ["val"] = 2, ["test"] = 3 },
            ["files"] = new Dictionary<string, object>
            {
                ["28"] = new { url = "https://zenodo.org/records/10519652/files/pathmnist.npz?download=1", md5 = Tests.Runtime.DownloadTests.Md5(bytes),
                    bytes = bytes.Length },
            },
        };
        File.WriteAllText(registry, JsonSerializer.Serialize(new { subsets = new[] { subset } }));
        return (bytes, registry);
    }

    [Fact]
    public void DownloadsThroughAMirrorVerifiesAndThenHasNothingToDo()
    {
        var (bytes, registry) = Prepare();
        using var server = new TestHttpServer(r => r.Path == "/mirror/pathmnist.npz" ? TestResponse.File(bytes, r) : new TestResponse(404, []));
        string output = Path.Combine(folder, "out");
        var environment = new Dictionary<string, string?> { [MedMnistRegistry.OverrideVariable] = registry };

        var first = Run(environment, "download", "medmnist", "pathmnist", "--mirror", server.BaseUrl + "/mirror/", "--out", output);
        Assert.True(first.Code == 0, first.Stdout + first.Stderr);
        Assert.Contains("pathmnist.npz: done", first.Stdout);
        Assert.Contains("100%", first.Stdout);  // not a terminal: plain progress lines
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(output, "pathmnist.npz")));
        Assert.False(File.Exists(Path.Combine(output, "pathmnist.npz.part")));

        // The environment variable instead of --mirror; the file is there, so no request is made.
        environment[MedMnistRegistry.MirrorVariable] = server.BaseUrl + "/mirror";
        var second = Run(environment, "download", "medmnist", "pathmnist", "--out", output);
        Assert.Equal(0, second.Code);
        Assert.Contains("already present and verified", second.Stdout);
        Assert.Single(server.Requests);

        // Default folder: $MEDFORMER_HOME/medmnist; then the corpus reads it.
        var third = Run(environment, "download", "medmnist", "pathmnist");
        Assert.Equal(0, third.Code);
        string home = Path.Combine(folder, "home", "medmnist", "pathmnist.npz");
        using var corpus = MedMnistCorpus.Open(home, "test", MedMnistRegistry.Load(registry).Get("pathmnist"));
        Assert.Equal(3, corpus.Count);
        using var sample = corpus.Get(2);
        Assert.Equal([3L, 28, 28], sample.Image.shape);
    }

    [Fact]
    public void BadArgumentsExitWithTwoAndSayWhatIsValid()
    {
        var none = new Dictionary<string, string?>();
        var unknown = Run(none, "download", "medmnist", "pathmnst");
        Assert.Equal(2, unknown.Code);
        Assert.Contains("no MedMNIST subset 'pathmnst'", unknown.Stderr);
        Assert.Contains("synapsemnist3d", unknown.Stderr);

        var size = Run(none, "download", "medmnist", "vesselmnist3d", "--size", "224");
        Assert.Equal(2, size.Code);
        Assert.Contains("vesselmnist3d has no size 224: its sizes are 28, 64", size.Stderr);

        var list = Run(none, "download", "medmnist", "--list");
        Assert.Equal(0, list.Code);
        Assert.Equal(18, list.Stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    [Fact]
    public void AFailedDownloadExitsWithOneAndSaysWhy()
    {
        var (_, registry) = Prepare();
        using var server = new TestHttpServer(_ => new TestResponse(404, []));
        var environment = new Dictionary<string, string?> { [MedMnistRegistry.OverrideVariable] = registry };
        var result = Run(environment, "download", "medmnist", "pathmnist", "--mirror", server.BaseUrl, "--out", Path.Combine(folder, "out"));
        Assert.Equal(1, result.Code);
        Assert.Contains($"{server.BaseUrl}/pathmnist.npz: HTTP 404 Not Found", result.Stderr);
        Assert.False(File.Exists(Path.Combine(folder, "out", "pathmnist.npz")));
    }
}
