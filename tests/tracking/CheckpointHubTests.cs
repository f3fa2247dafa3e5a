using System.Formats.Tar;
using System.Text.Json;
using Medformer.Runtime.Net;
using Medformer.Tracking.Hub;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>
/// The hub against a server on 127.0.0.1: checkpoints land as model folders Checkpoint.Load accepts; a cut download
/// resumes; a wrong checksum leaves nothing; concurrent fetches of one checkpoint end with one good copy.
/// </summary>
public sealed class CheckpointHubTests : IDisposable
{
    readonly HubFiles files = new();
    readonly List<string> log = [];

    public void Dispose() => files.Dispose();

    CheckpointHub Hub => new(files.Home);

    DownloadOptions Fast(int retries = 2) =>
        new DownloadOptions(TimeSpan.FromSeconds(5), retries, TimeSpan.FromMilliseconds(10)) { Log = line => { lock (log) log.Add(line); } };

    HubEntry Entry(TestHttpServer server, string file, byte[] bytes, string? sha256 = null, object? config = null) =>
        HubManifest.Parse(HubFiles.Manifest(HubFiles.Entry("tiny", server.Url(file), bytes, sha256, config)), "test").Checkpoints[0];

    void AssertTheModel(string folder)
    {
        using var model = Checkpoint.Load(folder);
        Assert.Equal(MedformerConfig.Tiny.ToJson(), model.Config.ToJson());
        Assert.Equal(files.Weights, File.ReadAllBytes(Path.Combine(folder, Checkpoint.WeightsFile)));
    }

    [Theory]
    [InlineData("tar")]
    [InlineData("zip")]
    public async Task APackedFolderLandsAsAModelFolderOnceThenComesFromTheCache(string format)
    {
        byte[] packed = files.Packed(format);
        using var server = new TestHttpServer(r => TestResponse.File(packed, r));
        var entry = Entry(server, "tiny." + format, packed);
        var first = await Hub.FetchAsync(entry, Fast());
        Assert.Equal(DownloadOutcome.Downloaded, first.Outcome);
        Assert.Equal(Path.Combine(files.Home, "hub", "tiny", HubFiles.Sha256(packed), "model"), first.ModelFolder);
        AssertTheModel(first.ModelFolder);
        // Only the model folder and the lock remain: the archive went once unpacked.
        Assert.Equal(["model"], Directory.EnumerateFileSystemEntries(Path.GetDirectoryName(first.ModelFolder)!).Select(Path.GetFileName).Where(n => n !=
            ".lock"));

        var second = await Hub.FetchAsync(entry, Fast());
        Assert.Equal((DownloadOutcome.AlreadyPresent, first.ModelFolder), (second.Outcome, second.ModelFolder));
        Assert.Single(server.Requests);
    }

    [Fact]
    public async Task ABareSafetensorsFileGetsItsConfigFromTheManifest()
    {
        byte[] weights = files.Weights;
        using var server = new TestHttpServer(r => TestResponse.File(weights, r));
        var entry = Entry(server, "tiny.safetensors", weights, config: "tiny");
        var fetched = await Hub.FetchAsync(entry, Fast(), c => MedformerConfig.Resolve(c.GetString()!).ToJson());
        AssertTheModel(fetched.ModelFolder);

        var bare = Entry(server, "other.safetensors", weights) with { Name = "other" };
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => Hub.FetchAsync(bare, Fast()));
        Assert.Contains("holds no config.json and the manifest gives no config for 'other'", e.Message);
        Assert.False(Directory.Exists(Path.Combine(Hub.EntryFolder(bare, HubFiles.Sha256(weights)), "model")));
    }

    [Fact]
    public async Task ACutDownloadLeavesOnlyThePartAndTheNextRunResumesIt()
    {
        byte[] packed = files.Packed("tar");
        int cut = packed.Length / 3;
        bool broken = true;
        using var server = new TestHttpServer(r => broken ? new TestResponse(200, packed) { SendOnly = cut } : TestResponse.File(packed, r));
        var entry = Entry(server, "tiny.tar", packed);
        string folder = Hub.EntryFolder(entry, entry.Sha256!);

        var e = await Assert.ThrowsAsync<DownloadException>(() => Hub.FetchAsync(entry, Fast(retries: 0)));
        Assert.Contains($"{cut} bytes kept", e.Message);
        Assert.False(Directory.Exists(Path.Combine(folder, "model")));
        Assert.False(File.Exists(Path.Combine(folder, "tiny.tar")));
        Assert.Equal(cut, new FileInfo(Path.Combine(folder, "tiny.tar.part")).Length);

        broken = false;
        var fetched = await Hub.FetchAsync(entry, Fast());
        Assert.Equal(cut, fetched.Download!.ResumedFrom);
        Assert.Equal(cut, server.Requests[^1].RangeFrom);
        AssertTheModel(fetched.ModelFolder);
    }

    [Fact]
    public async Task AWrongChecksumIsRefusedAndLeavesNothingInPlace()
    {
        byte[] packed = files.Packed("tar");
        var tampered = (byte[])packed.Clone();
        tampered[^700] ^= 1;
        using var server = new TestHttpServer(r => TestResponse.File(tampered, r));
        var entry = Entry(server, "tiny.tar", packed);
        var e = await Assert.ThrowsAsync<DownloadException>(() => Hub.FetchAsync(entry, Fast()));
        Assert.Contains($"SHA-256 mismatch: expected {HubFiles.Sha256(packed)}, got {HubFiles.Sha256(tampered)}", e.Message);
        string folder = Hub.EntryFolder(entry, entry.Sha256!);
        Assert.Equal([".lock"], Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName));
    }

    [Fact]
    public async Task ConcurrentFetchesOfOneCheckpointEndWithOneGoodCopy()
    {
        byte[] packed = files.Packed("tar");
        using var server = new TestHttpServer(r => TestResponse.File(packed, r) with { Trickle = TimeSpan.FromMilliseconds(5) });
        var entry = Entry(server, "tiny.tar", packed);
        var results = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => new CheckpointHub(files.Home).FetchAsync(entry, Fast()))));
        Assert.Single(results, r => r.Outcome == DownloadOutcome.Downloaded);
        Assert.All(results, r => Assert.Equal(results[0].ModelFolder, r.ModelFolder));
        Assert.Single(server.Requests);
        Assert.Contains(log, l => l.Contains("another process is fetching it; waiting"));
        AssertTheModel(results[0].ModelFolder);
    }

    [Fact]
    public async Task AUrlWithNoChecksumIsFiledUnderTheDigestItHas()
    {
        byte[] packed = files.Packed("tar");
        using var server = new TestHttpServer(r => TestResponse.File(packed, r));
        var entry = HubEntry.ForUrl(server.Url("models/tiny-v1.tar"), sha256: null);
        Assert.Equal("tiny-v1", entry.Name);
        var fetched = await Hub.FetchAsync(entry, Fast());
        Assert.Equal(HubFiles.Sha256(packed), fetched.Sha256);
        Assert.Equal(Path.Combine(files.Home, "hub", "tiny-v1", HubFiles.Sha256(packed), "model"), fetched.ModelFolder);
        Assert.Contains(log, l => l.Contains("not verified (no SHA-256 given)"));
        AssertTheModel(fetched.ModelFolder);
    }

    [Fact]
    public async Task AnArchiveReachingOutsideItsFolderIsRefused()
    {
        string path = Path.Combine(files.Folder, "evil.tar");
        await using (var stream = File.Create(path))
        await using (var writer = new TarWriter(stream))
        {
            writer.WriteEntry(Path.Combine(files.ModelFolder, "config.json"), "config.json");
            writer.WriteEntry(Path.Combine(files.ModelFolder, "model.safetensors"), "../../../escaped.safetensors");
        }
        byte[] evil = File.ReadAllBytes(path);
        using var server = new TestHttpServer(r => TestResponse.File(evil, r));
        var e = await Assert.ThrowsAsync<InvalidDataException>(() => Hub.FetchAsync(Entry(server, "evil.tar", evil), Fast()));
        Assert.Contains("member '../../../escaped.safetensors' is not a file of the model folder", e.Message);
        Assert.Empty(Directory.EnumerateFiles(files.Home, "escaped*", SearchOption.AllDirectories));
    }

    [Fact]
    public void ManifestsAreCheckedFieldByField()
    {
        Assert.Empty(HubManifest.Embedded.Checkpoints);
        var url = new Uri("http://127.0.0.1/x.tar");
        string good = HubFiles.Manifest(HubFiles.Entry("a", url, [1, 2, 3], config: new { dim = 64 }));
        var entry = Assert.Single(HubManifest.Parse(good, "m.json").Checkpoints);
        Assert.Equal((3L, JsonValueKind.Object), (entry.Size, entry.Config!.Value.ValueKind));

        string Bad(string json) => Assert.Throws<InvalidDataException>(() => HubManifest.Parse(json, "m.json")).Message;
        Assert.Contains("'sha256' must be a string", Bad("""{"checkpoints": [{"name": "a", "url": "http://h/x"}]}"""));
        Assert.Contains("sha256 'abc' is not 64 hex digits", Bad("""{"checkpoints": [{"name": "a", "url": "http://h/x", "sha256": "abc"}]}"""));
        Assert.Contains("unknown key 'md5'", Bad("""{"checkpoints": [{"name": "a", "md5": "x"}]}"""));
        Assert.Contains("name '../a' must be letters", Bad("""{"checkpoints": [{"name": "../a", "url": "http://h/x"}]}"""));
        Assert.Contains("url 'ftp://h/x' is not an http(s) URL", Bad("""{"checkpoints": [{"name": "a", "url": "ftp://h/x"}]}"""));
        Assert.Contains("the name 'a' appears 2 times", Bad(HubFiles.Manifest(HubFiles.Entry("a", url, [1]), HubFiles.Entry("a", url, [2]))));
        Assert.Contains("format 2 is not 1", Bad("""{"format": 2, "checkpoints": []}"""));
        Assert.Contains("not JSON", Bad("{"));
    }
}
