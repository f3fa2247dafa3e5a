using System.Security.Cryptography;
using Medformer.Runtime.Net;
using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>
/// <see cref="Download"/> against a local server that behaves, drops, stalls, ignores ranges, corrupts and refuses:
/// the destination is only ever absent or the whole verified file.
/// </summary>
public sealed class DownloadTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-download-").FullName;
    readonly byte[] content = RandomBytes(300_000, 7);
    readonly string md5;
    readonly List<string> log = [];

    public DownloadTests() => md5 = Md5(content);

    public void Dispose() => Directory.Delete(folder, recursive: true);

    string Destination => Path.Combine(folder, "sub", "file.npz");
    string Part => Destination + ".part";

    DownloadOptions Fast(int retries = 2, double timeoutSeconds = 5) =>
        new DownloadOptions(TimeSpan.FromSeconds(timeoutSeconds), retries, TimeSpan.FromMilliseconds(10)) { Log = line => { lock (log) log.Add(line); } };

    [Fact]
    public async Task FreshDownloadLandsVerifiedAndASecondOneDoesNothing()
    {
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var progress = new List<DownloadProgress>();
        var options = Fast() with { Progress = p => { lock (progress) progress.Add(p); } };
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), content.Length, options);
        Assert.Equal(DownloadOutcome.Downloaded, result.Outcome);
        Assert.Equal((content.Length, 0L, 1), (result.Bytes, result.ResumedFrom, result.Attempts));
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.False(File.Exists(Part));
        Assert.Null(Assert.Single(server.Requests).RangeFrom);
        Assert.Equal(new DownloadProgress(content.Length, content.Length), progress[^1]);

        var again = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5.ToUpperInvariant()), options: Fast());
        Assert.Equal(DownloadOutcome.AlreadyPresent, again.Outcome);
        Assert.Single(server.Requests);
        Assert.Contains(log, l => l.Contains("already present"));
    }

    [Fact]
    public async Task ResumesATruncatedPartWithARangeRequest()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Destination)!);
        File.WriteAllBytes(Part, content[..100_000]);
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(100_000, result.ResumedFrom);
        Assert.Equal(100_000, Assert.Single(server.Requests).RangeFrom);
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.False(File.Exists(Part));
    }

    [Fact]
    public async Task ADroppedConnectionIsResumedWhereItBroke()
    {
        using var server = new TestHttpServer(r => r.Number == 1
            ? new TestResponse(200, content) { SendOnly = 120_000 }
            : TestResponse.File(content, r));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.Equal(2, result.Attempts);
        Assert.Equal(2, server.Requests.Count);
        Assert.Null(server.Requests[0].RangeFrom);
        Assert.Equal(120_000, server.Requests[1].RangeFrom);
        Assert.Contains(log, l => l.Contains("at byte 120000") && l.Contains("retry 1 of 2") && l.EndsWith("from byte 120000"));
    }

    [Fact]
    public async Task AServerIgnoringRangeRestartsFromZero()
    {
        // The .part holds wrong bytes: appending the whole file to it would fail the MD5; starting over must not.
        Directory.CreateDirectory(Path.GetDirectoryName(Destination)!);
        File.WriteAllBytes(Part, RandomBytes(100_000, 99));
        using var server = new TestHttpServer(r => TestResponse.File(content, r, honourRange: false));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.Equal(0, result.ResumedFrom);
        Assert.Equal(100_000, Assert.Single(server.Requests).RangeFrom);
        Assert.Contains(log, l => l.Contains("ignored the range request"));
    }

    [Fact]
    public async Task ACorruptDownloadFailsNamingBothChecksumsAndLeavesNothing()
    {
        var corrupt = (byte[])content.Clone();
        corrupt[12_345] ^= 0x20;
        using var server = new TestHttpServer(r => TestResponse.File(corrupt, r));
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast()));
        Assert.Contains("MD5 mismatch", e.Message);
        Assert.Contains($"expected {md5}", e.Message);
        Assert.Contains($"got {Md5(corrupt)}", e.Message);
        Assert.False(File.Exists(Destination));
        Assert.False(File.Exists(Part));
    }

    [Fact]
    public async Task Sha256IsVerifiedAndWithNoChecksumTheDigestIsReported()
    {
        string sha256 = Convert.ToHexStringLower(SHA256.HashData(content));
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Sha256(sha256), content.Length, Fast());
        Assert.Equal(sha256, result.Digest);
        Assert.Contains(log, l => l.Contains($"SHA-256 {sha256} verified"));

        var wrong = sha256[..^1] + (sha256[^1] == '0' ? '1' : '0');
        File.Delete(Destination);
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Sha256(wrong),
            options: Fast()));
        Assert.Contains($"SHA-256 mismatch: expected {wrong}, got {sha256}", e.Message);
        Assert.False(File.Exists(Destination));
        Assert.False(File.Exists(Part));

        var unverified = await Download.FetchAsync(server.Url("file.npz"), Destination, checksum: null, options: Fast());
        Assert.Equal((DownloadOutcome.Downloaded, sha256), (unverified.Outcome, unverified.Digest));
        Assert.Equal(content, File.ReadAllBytes(Destination));
    }

    [Fact]
    public async Task AWrongLengthFailsWhenTheLengthIsKnown()
    {
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5),
            content.Length + 10, Fast()));
        Assert.Contains($"offers {content.Length} bytes, but the file has {content.Length + 10}", e.Message);
        Assert.False(File.Exists(Destination));
    }

    [Fact]
    public async Task NotFoundFailsAtOnceWithTheStatus()
    {
        using var server = new TestHttpServer(_ => new TestResponse(404, "no"u8.ToArray()));
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("missing.npz"), Destination, Checksum.Md5(md5),
            options: Fast()));
        Assert.Contains("HTTP 404 Not Found", e.Message);
        Assert.Contains("missing.npz", e.Message);
        Assert.Single(server.Requests);
        Assert.False(File.Exists(Destination));
        Assert.False(File.Exists(Part));
    }

    [Fact]
    public async Task ServerErrorsAreRetriedABoundedNumberOfTimes()
    {
        using var server = new TestHttpServer(_ => new TestResponse(500, "down"u8.ToArray()));
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5),
            options: Fast(retries: 2)));
        Assert.Contains("HTTP 500 Internal Server Error", e.Message);
        Assert.Contains("gave up after 3 attempt(s)", e.Message);
        Assert.Equal(3, server.Requests.Count);
        Assert.False(File.Exists(Destination));

        // A server that recovers: two failures, then the file.
        using var flaky = new TestHttpServer(r => r.Number <= 2 ? new TestResponse(503, []) : TestResponse.File(content, r));
        var result = await Download.FetchAsync(flaky.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast(retries: 2));
        Assert.Equal(3, result.Attempts);
        Assert.Equal(content, File.ReadAllBytes(Destination));
    }

    [Fact]
    public async Task AStalledServerTimesOutAndKeepsWhatCameForLater()
    {
        using var server = new TestHttpServer(r => r.RangeFrom == null
            ? new TestResponse(200, content) { SendOnly = 50_000, Stall = true }
            : new TestResponse(206, []) { StallBeforeHeaders = true });
        // The server stalls for good: only the timeouts end the fetch, and the messages say which fired (no clock asserted).
        // 2 s, not less: the first attempt must take in the 50,000 bytes before its timeout even on a loaded machine
        // (at 0.3 s and a load of 13 it once got none, so the retry asked for the whole file again).
        var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5),
            options: Fast(retries: 1, timeoutSeconds: 2)));
        Assert.Contains("no response within 2 s", e.Message);
        Assert.Contains(log, l => l.Contains("no data for 2 s at byte 50000"));
        Assert.Contains("50000 bytes kept", e.Message);
        Assert.Equal(50_000, new FileInfo(Part).Length);
        Assert.False(File.Exists(Destination));

        // The next run resumes from there.
        using var good = new TestHttpServer(r => TestResponse.File(content, r));
        var result = await Download.FetchAsync(good.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(50_000, result.ResumedFrom);
        Assert.Equal(content, File.ReadAllBytes(Destination));
    }

    [Fact]
    public async Task AWholePartIsVerifiedWhenTheServerHasNothingMore()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Destination)!);
        File.WriteAllBytes(Part, content);
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(content.Length, Assert.Single(server.Requests).RangeFrom);
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.Equal(content.Length, result.ResumedFrom);
    }

    [Fact]
    public async Task APresentFileWithTheWrongChecksumIsReplaced()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Destination)!);
        File.WriteAllBytes(Destination, RandomBytes(1000, 3));
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        var result = await Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5), options: Fast());
        Assert.Equal(DownloadOutcome.Downloaded, result.Outcome);
        Assert.Equal(content, File.ReadAllBytes(Destination));
        Assert.Contains(log, l => l.Contains("downloading it again"));
    }

    [Fact]
    public async Task ASecondDownloadOfTheSameFileIsRefusedWhileTheFirstRuns()
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Destination)!);
        using var server = new TestHttpServer(r => TestResponse.File(content, r));
        using (new FileStream(Part, FileMode.Create, FileAccess.ReadWrite, FileShare.None))
        {
            var e = await Assert.ThrowsAsync<DownloadException>(() => Download.FetchAsync(server.Url("file.npz"), Destination, Checksum.Md5(md5),
                options: Fast()));
            Assert.Contains("is another download of it running?", e.Message);
        }
        Assert.Empty(server.Requests);
    }

    [Fact]
    public async Task BadArgumentsAreRefused()
    {
        Assert.Throws<ArgumentException>(() => Checksum.Md5("abc"));
        Assert.Throws<ArgumentException>(() => Checksum.Sha256(md5));
        await Assert.ThrowsAsync<ArgumentException>(() => Download.FetchAsync(new Uri("ftp://127.0.0.1/x"), Destination, Checksum.Md5(md5)));
    }

    internal static byte[] RandomBytes(int count, int seed)
    {
        var bytes = new byte[count];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    internal static string Md5(byte[] bytes) => Convert.ToHexStringLower(MD5.HashData(bytes));
}
