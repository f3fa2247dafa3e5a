using System.IO.Compression;
using System.Text;
using Medformer.Tracking.Hub;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// Crafted inputs of <c>medformer download</c> and the hub (issue 27): tar archives with a huge PAX record, sparse
/// members, links and devices; a manifest over plain http; a cached checkpoint changed after it was verified; a
/// config.json without bounds and weights that do not fit it. Each is refused in one line, exit 1 (2 for bad
/// arguments), within a memory budget.
/// </summary>
public sealed class HostileHubTests(ITestOutputHelper output) : IDisposable
{
    const long Slack = 512L << 20;
    readonly HubFiles files = new();

    public void Dispose() => files.Dispose();

    Dictionary<string, string> Environment => new() { ["MEDFORMER_HOME"] = files.Home, ["MEDFORMER_HUB"] = "", ["MEDFORMER_HUB_SHA256"] = "" };

    Repo.Result Run(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, files.Folder, 120, Environment);
        output.WriteLine($"medformer {string.Join(' ', args)} -> {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result;
    }

    /// <summary>A ustar header with a valid checksum.</summary>
    static byte[] Header(string name, char type, long size)
    {
        var header = new byte[512];
        void Put(int at, string text) => Encoding.ASCII.GetBytes(text).CopyTo(header, at);
        Put(0, name);
        Put(100, "0000644\0");
        Put(108, "0000000\0");
        Put(116, "0000000\0");
        Put(124, Convert.ToString(size, 8).PadLeft(11, '0') + "\0");
        Put(136, "00000000000\0");
        header[156] = (byte)type;
        Put(257, "ustar\0");
        Put(263, "00");
        Put(148, "        ");
        int sum = header.Sum(b => b);
        Put(148, Convert.ToString(sum, 8).PadLeft(6, '0') + "\0 ");
        return header;
    }

    static void Member(Stream tar, string name, char type, byte[] data)
    {
        tar.Write(Header(name, type, data.Length));
        tar.Write(data);
        tar.Write(new byte[(512 - data.Length % 512) % 512]);
    }

    string Write(string name, Action<Stream> tar, bool gzip = false)
    {
        string path = Path.Combine(files.Folder, name);
        using var file = File.Create(path);
        using Stream stream = gzip ? new GZipStream(file, CompressionLevel.SmallestSize) : file;
        tar(stream);
        stream.Write(new byte[1024]);
        return path;
    }

    // A 256 MiB PAX record: gzip packs it into about 260 KB.
    string HugePax() => Write("pax.tar.gz", tar =>
    {
        const int size = 256 << 20;
        tar.Write(Header("PaxHeaders/model.safetensors", 'x', size));
        var chunk = Encoding.ASCII.GetBytes(new string('a', 1 << 20));
        for (int i = 0; i < size / chunk.Length; i++) tar.Write(chunk);
        Member(tar, "model.safetensors", '0', files.Weights);
    }, gzip: true);

    string Unpack(string archive)
    {
        string folder = Path.Combine(files.Folder, "unpacked-" + Path.GetFileName(archive));
        Directory.CreateDirectory(folder);
        var e = Assert.Throws<InvalidDataException>(() => PackedModel.Unpack(archive, folder));
        Assert.StartsWith(archive + ": ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e.Message;
    }

    [Fact]
    public void AHugePaxRecordIsRefusedFromItsHeader()
    {
        string archive = HugePax();
        output.WriteLine($"{archive}: {new FileInfo(archive).Length} bytes");
        Assert.Contains($"the PAX header of 'PaxHeaders/model.safetensors' is {256 << 20} bytes, over the limit of {TarMembers.MaxRecord}", Unpack(archive));
    }

    [Theory]
    [InlineData('S', "a sparse file")]
    [InlineData('1', "a hard link")]
    [InlineData('2', "a symbolic link")]
    [InlineData('3', "a character device")]
    [InlineData('4', "a block device")]
    [InlineData('6', "a FIFO")]
    [InlineData('K', "a link (GNU long link name)")]
    public void UnsupportedMembersAreRefusedNamingThem(char type, string kind)
    {
        string archive = Write($"member-{(int)type}.tar", tar =>
        {
            Member(tar, "config.json", '0', Encoding.UTF8.GetBytes(MedformerConfig.Tiny.ToJson()));
            Member(tar, "model.safetensors", type, type == 'S' ? new byte[512] : []);
        });
        Assert.Contains($"'model.safetensors' is {kind}; a model archive holds only plain files", Unpack(archive));
    }

    [Fact]
    public void PaxSparseFilesLongNamesAndBadChecksumsAreRefused()
    {
        byte[] Pax(string key, string value)
        {
            string body = $" {key}={value}\n";
            int length = body.Length + 1;
            while (length.ToString().Length + body.Length != length) length++;
            return Encoding.UTF8.GetBytes(length + body);
        }
        string sparse = Write("pax-sparse.tar", tar =>
        {
            Member(tar, "PaxHeaders/model.safetensors", 'x', Pax("GNU.sparse.major", "1"));
            Member(tar, "model.safetensors", '0', new byte[10]);
        });
        Assert.Contains("'PaxHeaders/model.safetensors' is a sparse file", Unpack(sparse));

        string longName = Write("long-name.tar", tar => Member(tar, "././@LongLink", 'L', new byte[TarMembers.MaxRecord + 1]));
        Assert.Contains($"a GNU long name is {TarMembers.MaxRecord + 1} bytes, over the limit", Unpack(longName));

        string escaping = Write("escape.tar", tar =>
        {
            Member(tar, "PaxHeaders/x", 'x', Pax("path", "../../etc/passwd"));
            Member(tar, "x", '0', new byte[10]);
        });
        Assert.Contains("member '../../etc/passwd' is not a file of the model folder", Unpack(escaping));

        string damaged = Path.Combine(files.Folder, "damaged.tar");
        byte[] bytes = files.Packed("tar");
        bytes[150] ^= 0x01;   // in the checksum field of the first header
        File.WriteAllBytes(damaged, bytes);
        Assert.Contains("not a tar header at byte 0 (its checksum does not match)", Unpack(damaged));
    }

    (TestHttpServer Server, string Pin) Serve(string archive)
    {
        byte[] packed = File.ReadAllBytes(archive);
        string manifest = HubFiles.Manifest(HubFiles.Entry("tiny", new Uri("http://placeholder/tiny.tar.gz"), packed));
        TestHttpServer? server = null;
        server = new TestHttpServer(r => r.Path switch
        {
            "/hub.json" => new TestResponse(200, Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server!.BaseUrl))),
            "/tiny.tar.gz" => TestResponse.File(packed, r),
            _ => new TestResponse(404, []),
        });
        return (server, HubFiles.Sha256(Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server.BaseUrl))));
    }

    [Fact]
    public void DownloadOfAHugePaxRecordStaysWithinTheMemoryBudgetAndSaysOneLine()
    {
        string archive = HugePax();
        var (server, pin) = Serve(archive);
        using (server)
        {
            string url = server.BaseUrl + "/hub.json";
            var baseline = PeakMemory.Run(Repo.Cli, ["download", "--list", "--manifest", url, "--manifest-sha256", pin], files.Folder, Environment);
            var hostile = PeakMemory.Run(Repo.Cli, ["download", "tiny", "--manifest", url, "--manifest-sha256", pin], files.Folder, Environment);
            output.WriteLine($"baseline {baseline.PeakBytes >> 20} MiB; hostile {hostile.PeakBytes >> 20} MiB: {hostile.ProgramStderr}");
            Assert.Equal(1, hostile.ExitCode);
            Assert.Single(hostile.ProgramStderr.Split('\n'));
            Assert.StartsWith("medformer download: ", hostile.ProgramStderr);
            Assert.Contains("tiny.tar.gz: the PAX header of 'PaxHeaders/model.safetensors' is 268435456 bytes, over the limit", hostile.ProgramStderr);
            Assert.True(hostile.PeakBytes <= baseline.PeakBytes + Slack, $"peak {hostile.PeakBytes >> 20} MiB, baseline {baseline.PeakBytes >> 20} MiB");
        }
    }

    [Fact]
    public void AManifestsConfigMayNameAPresetButNotALocalFile()
    {
        byte[] weights = files.Weights;
        string manifest = HubFiles.Manifest(HubFiles.Entry("bare", new Uri("http://placeholder/bare.safetensors"), weights, config: "/etc/hostname"));
        TestHttpServer? server = null;
        server = new TestHttpServer(r => r.Path switch
        {
            "/hub.json" => new TestResponse(200, Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server!.BaseUrl))),
            "/bare.safetensors" => TestResponse.File(weights, r),
            _ => new TestResponse(404, []),
        });
        using (server)
        {
            string pin = HubFiles.Sha256(Encoding.UTF8.GetBytes(manifest.Replace("http://placeholder", server.BaseUrl)));
            var result = Run("download", "bare", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin);
            Assert.Equal(1, result.ExitCode);
            Assert.Equal("medformer download: the manifest's config '/etc/hostname' is not a preset (tiny, small, base, large) or a config object",
                result.Stderr.Trim());
        }
    }

    [Fact]
    public void AManifestOverPlainHttpMustBePinned()
    {
        string archive = Path.Combine(files.Folder, "tiny.tar.gz");
        using (var file = File.Create(archive))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
            gzip.Write(files.Packed("tar"));
        var (server, pin) = Serve(archive);
        using (server)
        {
            string url = server.BaseUrl + "/hub.json";
            var refused = Run("download", "tiny", "--manifest", url);
            Assert.Equal(2, refused.ExitCode);
            Assert.Equal($"medformer download: {url}: a hub manifest over plain http is not trusted (its SHA-256 values could be forged on the way); use " +
                "https, or pin it with --manifest-sha256 HEX or $MEDFORMER_HUB_SHA256", refused.Stderr.Trim());
            Assert.DoesNotContain(server.Requests, r => r.Path == "/tiny.tar.gz");

            var wrong = Run("download", "tiny", "--manifest", url, "--manifest-sha256", new string('1', 64));
            Assert.Equal(1, wrong.ExitCode);
            Assert.Contains($"SHA-256 mismatch: expected {new string('1', 64)}, got {pin}", wrong.Stderr);
            Assert.Single(wrong.Stderr.Trim().Split('\n'));

            var bare = Run("download", server.BaseUrl + "/tiny.tar.gz");
            Assert.Equal(2, bare.ExitCode);
            Assert.Contains("a checkpoint over plain http with nothing to verify it against; use https, or give --sha256 HEX", bare.Stderr);

            var pinned = Run("download", "tiny", "--manifest", url, "--manifest-sha256", pin);
            Assert.True(pinned.ExitCode == 0, pinned.Stderr);
        }
    }

    [Fact]
    [System.Runtime.Versioning.SupportedOSPlatform("linux")]
    public void ACachedCheckpointChangedAfterItWasVerifiedIsNotUsed()
    {
        string archive = Path.Combine(files.Folder, "tiny.tar.gz");
        using (var file = File.Create(archive))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
            gzip.Write(files.Packed("tar"));
        var (server, pin) = Serve(archive);
        using (server)
        {
            string[] download = ["download", "tiny", "--manifest", server.BaseUrl + "/hub.json", "--manifest-sha256", pin];
            Assert.Equal(0, Run(download).ExitCode);
            string entry = Path.Combine(files.Home, "hub", "tiny", HubFiles.Sha256(File.ReadAllBytes(archive)));
            string weights = Path.Combine(entry, "model", "model.safetensors");
            foreach (string folder in new[] { Path.Combine(files.Home, "hub"), Path.Combine(files.Home, "hub", "tiny"), entry })
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(folder));
            Assert.True(File.Exists(Path.Combine(entry, "model", CacheDigests.FileName)));

            // Same length, other bytes: the size+mtime check catches it on the next use.
            byte[] bytes = File.ReadAllBytes(weights);
            bytes[^1] ^= 0xff;
            File.WriteAllBytes(weights, bytes);
            File.SetLastWriteTimeUtc(weights, DateTime.UtcNow.AddMinutes(1));
            var changed = Run(download);
            Assert.Equal(1, changed.ExitCode);
            Assert.Single(changed.Stderr.Trim().Split('\n'));
            Assert.Contains($"{weights}: modified at", changed.Stderr);
            Assert.Contains("`medformer download tiny --verify` checks it", changed.Stderr);

            // --verify hashes it, finds it differs, and fetches it again.
            var verified = Run([.. download, "--verify"]);
            Assert.True(verified.ExitCode == 0, verified.Stderr);
            Assert.Contains("fetching 'tiny' again", verified.Stdout);
            Assert.Equal(files.Weights, File.ReadAllBytes(weights));
            Assert.Equal(2, server.Requests.Count(r => r.Path == "/tiny.tar.gz"));

            // Touched only: --verify finds the same digests and records the new time; nothing is fetched.
            File.SetLastWriteTimeUtc(weights, DateTime.UtcNow.AddMinutes(2));
            Assert.Equal(1, Run(download).ExitCode);
            var touched = Run([.. download, "--verify"]);
            Assert.Equal(0, touched.ExitCode);
            Assert.Contains("already in the cache, every file verified, nothing to do", touched.Stdout);
            Assert.Equal(0, Run(download).ExitCode);
            Assert.Equal(2, server.Requests.Count(r => r.Path == "/tiny.tar.gz"));

            // A folder of an older medformer, with no record: fetched again rather than trusted.
            File.Delete(Path.Combine(entry, "model", CacheDigests.FileName));
            var unrecorded = Run(download);
            Assert.Equal(0, unrecorded.ExitCode);
            Assert.Contains("has no record of its files (.digests.json); fetching 'tiny' again", unrecorded.Stdout);
            Assert.Equal(3, server.Requests.Count(r => r.Path == "/tiny.tar.gz"));
        }
    }

    [Fact]
    public void AConfigWithoutBoundsAndWeightsThatDoNotFitItAreRefused()
    {
        string folder = Path.Combine(files.Folder, "hostile-config");
        Directory.CreateDirectory(folder);
        File.Copy(Path.Combine(files.ModelFolder, Checkpoint.WeightsFile), Path.Combine(folder, Checkpoint.WeightsFile));
        string config = Path.Combine(folder, Checkpoint.ConfigFile);
        foreach (var (json, fault) in new[]
        {
            ("""{"dim": 1048576, "self_attention_heads": 1, "cross_attention_heads": 1, "decoder_heads": 1}""", "dim 1048576 is over the limit of 16384"),
            ("""{"depth": 100000}""", "depth 100000 (at most 256)"),
            ("""{"dim": 16384, "depth": 256, "self_attention_heads": 8}""", "over the limit of 8e9"),
            ("""{"latents_per_bank": 100000000}""", "latents_per_bank 100000000 (at most 4096)"),
        })
        {
            File.WriteAllText(config, json);
            var e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(folder));
            Assert.StartsWith(config + ": ", e.Message);
            Assert.Contains(fault, e.Message);
        }
        // Within the bounds but far larger than the weights: refused before the model is built.
        File.WriteAllText(config, (MedformerConfig.Tiny with { Dim = 2048, Depth = 32 }).ToJson());
        var large = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(folder));
        Assert.True(large.Message.StartsWith(config + ": describes a model of at least ", StringComparison.Ordinal) && large.Message.EndsWith("; not built",
            StringComparison.Ordinal), large.Message);
        // A config of another size: the first tensor whose shape differs is named with both shapes.
        File.WriteAllText(config, (MedformerConfig.Tiny with { Dim = 32 }).ToJson());
        var mismatch = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(folder));
        Assert.Matches(@"model\.safetensors: cannot load into the model: size mismatch for '[^']+': "
            + @"\[[0-9, ]+\] in the checkpoint but \[[0-9, ]+\] in the model(;|$)", mismatch.Message);
    }
}
