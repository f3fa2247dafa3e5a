using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;

namespace Medformer.Runtime.Net;

/// <summary>How a download behaves when the network does not.</summary>
/// <param name="Timeout">The longest wait for the response headers or for the next bytes of the body; past it the
/// attempt fails (a stalled server).</param>
/// <param name="Retries">Further attempts after a failure that may pass (connection errors, timeouts, HTTP 408, 429
/// and 5xx, a body cut short); each resumes from what the .part file holds. An attempt that brings at least
/// 1 MiB starts the count afresh.</param>
/// <param name="Backoff">The wait before the first retry, doubled for each next one (at most 60 s).</param>
public sealed record DownloadOptions(TimeSpan Timeout, int Retries, TimeSpan Backoff)
{
    public static DownloadOptions Default { get; } = new(TimeSpan.FromSeconds(30), 5, TimeSpan.FromSeconds(1));

    /// <summary>Bytes so far and the total when known, often (every 100 ms at most) and at the end.</summary>
    public Action<DownloadProgress>? Progress { get; init; }

    /// <summary>What happened, one line each: resuming, a server ignoring the range, a retry and why.</summary>
    public Action<string>? Log { get; init; }
}

public sealed record DownloadProgress(long Received, long? Total);

public enum DownloadOutcome { Downloaded, AlreadyPresent }

/// <param name="ResumedFrom">Bytes already in the .part file that the server did not send again.</param>
/// <param name="Digest">The file's digest, lower-case hex: the expected checksum's algorithm, SHA-256 when none was given.</param>
public sealed record DownloadResult(string Path, DownloadOutcome Outcome, long Bytes, long ResumedFrom, int Attempts, string Digest);

/// <summary>A download that failed for good: the server refused, the retries ran out, or the file is not the one expected.</summary>
public sealed class DownloadException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>
/// Fetches one file over HTTP(S) into place, the way a cache must: it streams to DESTINATION.part, resumes a .part
/// with a Range request (a server that ignores the range and sends the whole file is started over), verifies the
/// checksum (MD5 or SHA-256) and the length when known, and only then renames the .part onto the destination, so the
/// destination is either absent, the old file, or the whole verified file. A file that fails verification is deleted.
/// A destination already present with the right checksum is left alone. Two downloads of one file at once: the
/// second fails at once (the .part is locked); callers that must share one file wait on a lock of their own
/// (the checkpoint hub does).
/// </summary>
public static class Download
{
    const long ProgressResetBytes = 1 << 20;
    static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(60);

    // One client for the process (sockets are pooled); our own timeouts replace HttpClient's single one.
    static readonly HttpClient client = new(new SocketsHttpHandler
    {
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionLifetime = TimeSpan.FromMinutes(5),
        ConnectTimeout = TimeSpan.FromSeconds(30),
    })
    {
        Timeout = System.Threading.Timeout.InfiniteTimeSpan,
        DefaultRequestHeaders = { { "User-Agent", "medformer" } },
    };

    /// <summary>
    /// Downloads <paramref name="url"/> to <paramref name="destination"/>, verified against <paramref name="checksum"/>
    /// and <paramref name="bytes"/> when given. With no checksum the file is taken as it comes (its SHA-256 is in the
    /// result) and one already present is fetched again, since nothing says it is the right one.
    /// </summary>
    public static async Task<DownloadResult> FetchAsync(Uri url, string destination, Checksum? checksum, long? bytes = null,
        DownloadOptions? options = null, CancellationToken cancellation = default)
    {
        options ??= DownloadOptions.Default;
        if (url.Scheme is not ("http" or "https")) throw new ArgumentException($"{url}: only http and https downloads are supported", nameof(url));
        destination = Path.GetFullPath(destination);
        Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
        var algorithm = checksum?.Algorithm ?? HashAlgorithmName.SHA256;
        if (checksum != null && await AlreadyPresentAsync(destination, checksum, bytes, options, cancellation) is { } present) return present;

        string part = destination + ".part";
        using var transfer = new Transfer(OpenPart(part), algorithm);
        var file = transfer.File;
        bool verified = false;
        try
        {
            await PrepareResumeAsync(transfer, part, bytes, options, cancellation);
            int attempts = await TransferWithRetriesAsync(url, transfer, part, bytes, options, cancellation);
            var (received, actual) = await VerifyAsync(url, transfer, part, checksum, bytes, cancellation);
            verified = true;
            file.Dispose();
            File.Move(part, destination, overwrite: true);
            options.Log?.Invoke(checksum != null
                ? $"{destination}: downloaded, {received} bytes, {checksum} verified"
                : $"{destination}: downloaded, {received} bytes, SHA-256 {actual} (nothing to verify it against)");
            return new DownloadResult(destination, DownloadOutcome.Downloaded, received, transfer.ResumedFrom, attempts, actual);
        }
        finally
        {
            file.Dispose();
            if (!verified && File.Exists(part) && new FileInfo(part).Length == 0) File.Delete(part);
        }
    }

    /// <summary>The result for a destination that already holds the expected file; null (and a log line) when it does not.</summary>
    static async Task<DownloadResult?> AlreadyPresentAsync(string destination, Checksum checksum, long? bytes, DownloadOptions options,
        CancellationToken cancellation)
    {
        if (!File.Exists(destination)) return null;
        var (length, actual) = await Checksum.HashFileAsync(destination, checksum.Algorithm, cancellation);
        if (actual == checksum.Hex && (bytes == null || length == bytes))
        {
            options.Log?.Invoke($"{destination}: already present, {checksum} verified");
            return new DownloadResult(destination, DownloadOutcome.AlreadyPresent, length, 0, 0, actual);
        }
        options.Log?.Invoke($"{destination}: present but its {checksum.Name()} is {actual}, not {checksum.Hex}: downloading it again");
        return null;
    }

    static FileStream OpenPart(string part)
    {
        try
        {
            // No sharing: a second download of the same file fails here instead of interleaving its bytes.
            return new FileStream(part, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1 << 16, useAsync: true);
        }
        catch (IOException e) when (e is not FileNotFoundException and not DirectoryNotFoundException)
        {
            throw new DownloadException($"{part}: cannot open it ({e.Message}); is another download of it running?", e);
        }
    }

    /// <summary>Hashes what an earlier attempt left in the .part file, to resume after it; one longer than the file is emptied.</summary>
    static async Task PrepareResumeAsync(Transfer transfer, string part, long? bytes, DownloadOptions options, CancellationToken cancellation)
    {
        var file = transfer.File;
        if (file.Length == 0) return;
        if (bytes is { } expected && file.Length > expected)
        {
            options.Log?.Invoke($"{part}: longer than the file ({file.Length} > {expected} bytes): starting over");
            transfer.Restart();
            return;
        }
        await HashPrefixAsync(transfer, cancellation);
        transfer.ResumedFrom = file.Length;
    }

    /// <summary>Attempts until the body is complete, backing off between failures; returns the number of attempts.</summary>
    static async Task<int> TransferWithRetriesAsync(Uri url, Transfer transfer, string part, long? bytes, DownloadOptions options,
        CancellationToken cancellation)
    {
        var file = transfer.File;
        int attempts = 0, failures = 0;
        while (true)
        {
            attempts++;
            long before = file.Length;
            var failure = await FailureOfAttemptAsync(url, transfer, bytes, options, cancellation);
            if (failure == null) return attempts;
            if (file.Length - before >= ProgressResetBytes) failures = 0;
            failures++;
            if (failures > options.Retries)
                throw new DownloadException($"{url}: {failure.Message}; gave up after {attempts} attempt(s)"
                    + (file.Length > 0 ? $" ({file.Length} bytes kept in {part} for a later resume)" : ""), failure.InnerException);
            var wait = TimeSpan.FromTicks(Math.Min(MaxBackoff.Ticks, options.Backoff.Ticks * (1L << Math.Min(failures - 1, 20))));
            options.Log?.Invoke($"{url}: {failure.Message}; retry {failures} of {options.Retries} in {wait.TotalSeconds:0.##} s, from byte {file.Length}");
            await Task.Delay(wait, cancellation);
        }
    }

    /// <summary>One attempt; null when the body is complete, else why it is to be tried again.</summary>
    static async Task<TransientException?> FailureOfAttemptAsync(Uri url, Transfer transfer, long? bytes, DownloadOptions options,
        CancellationToken cancellation)
    {
        try
        {
            if (await AttemptAsync(url, transfer, bytes, options, cancellation)) return null;
            return new TransientException("the server answered with another range than asked for");
        }
        catch (TransientException e)
        {
            return e;
        }
    }

    /// <summary>Flushes the .part file to disk and checks its length and checksum; a file that fails is deleted.</summary>
    static async Task<(long Received, string Digest)> VerifyAsync(Uri url, Transfer transfer, string part, Checksum? checksum, long? bytes,
        CancellationToken cancellation)
    {
        var file = transfer.File;
        await file.FlushAsync(cancellation);
        file.Flush(flushToDisk: true);
        long received = file.Length;
        string actual = Convert.ToHexStringLower(transfer.Hash.GetHashAndReset());
        if (bytes is { } size && received != size)
            throw Mismatch(transfer, part, $"{url}: the download is {received} bytes, but the file has {size}");
        if (checksum != null && actual != checksum.Hex)
            throw Mismatch(transfer, part, $"{url}: {checksum.Name()} mismatch: expected {checksum.Hex}, got {actual} ({received} bytes)");
        return (received, actual);
    }

    static DownloadException Mismatch(Transfer transfer, string part, string message)
    {
        transfer.File.Dispose();
        File.Delete(part);
        return new DownloadException(message + $"; deleted {part}");
    }

    /// <summary>What a response's status says to do next.</summary>
    enum Next { ReadBody, StartOver, Verify }

    /// <summary>One request; true when the body is complete, false to go again at once (after a restart). Throws
    /// <see cref="TransientException"/> for a failure worth a retry, <see cref="DownloadException"/> for one that is not.</summary>
    static async Task<bool> AttemptAsync(Uri url, Transfer transfer, long? bytes, DownloadOptions options, CancellationToken cancellation)
    {
        var file = transfer.File;
        long have = file.Length;
        using var request = new HttpRequestMessage(HttpMethod.Get, url);
        if (have > 0) request.Headers.Range = new RangeHeaderValue(have, null);
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellation);
        deadline.CancelAfter(options.Timeout);
        using var response = await SendAsync(request, options, deadline.Token, cancellation);
        switch (Interpret(response, url, transfer, have, options, out long? total))
        {
            case Next.StartOver:
                return false;
            case Next.Verify:
                return true;
        }
        if (bytes is { } expected && total is { } claimed && claimed != expected)
            throw new DownloadException($"{url}: the server offers {claimed} bytes, but the file has {expected}");
        total ??= bytes;
        file.Position = file.Length;
        await CopyBodyAsync(response, transfer, total, options, deadline, cancellation);
        if (total is { } length && file.Length < length)
            throw new TransientException($"the connection closed at byte {file.Length} of {length}");
        return true;
    }

    /// <summary>Sends the request and waits for the response headers; no response, or a network error, is worth a retry.</summary>
    static async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, DownloadOptions options, CancellationToken deadline,
        CancellationToken cancellation)
    {
        try
        {
            return await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, deadline);
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TransientException($"no response within {options.Timeout.TotalSeconds:0.##} s");
        }
        catch (HttpRequestException e)
        {
            throw new TransientException(e.Message, e);
        }
    }

    /// <summary>
    /// What the response's status means for the transfer: a body to read (with the file's length, when the response
    /// says it), a restart (a range other than asked for), or nothing more to fetch; throws for a failed status.
    /// </summary>
    static Next Interpret(HttpResponseMessage response, Uri url, Transfer transfer, long have, DownloadOptions options, out long? total)
    {
        total = null;
        switch (response.StatusCode)
        {
            case HttpStatusCode.PartialContent when have > 0:
                var range = response.Content.Headers.ContentRange;
                if (range?.From != have)
                {
                    options.Log?.Invoke($"{url}: asked for bytes from {have}, got a range from {range?.From?.ToString() ?? "?"}: starting over");
                    transfer.Restart();
                    return Next.StartOver;
                }
                total = range.Length;
                options.Log?.Invoke($"{url}: resuming at byte {have}");
                return Next.ReadBody;
            case HttpStatusCode.OK:
                if (have > 0)
                {
                    options.Log?.Invoke($"{url}: the server ignored the range request and sends the whole file: starting over");
                    transfer.Restart();
                }
                total = response.Content.Headers.ContentLength;
                return Next.ReadBody;
            case HttpStatusCode.RequestedRangeNotSatisfiable when have > 0:
                // The .part may already be whole (a crash between its last byte and the rename): verification decides.
                return Next.Verify;
            case HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests or >= HttpStatusCode.InternalServerError:
                throw new TransientException($"HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
            default:
                throw new DownloadException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase}");
        }
    }

    static async Task CopyBodyAsync(HttpResponseMessage response, Transfer transfer, long? total,
        DownloadOptions options, CancellationTokenSource deadline, CancellationToken cancellation)
    {
        var (file, hash) = (transfer.File, transfer.Hash);
        var buffer = new byte[1 << 16];
        var clock = Stopwatch.StartNew();
        var lastReport = TimeSpan.Zero;
        try
        {
            deadline.CancelAfter(options.Timeout);
            await using var body = await response.Content.ReadAsStreamAsync(deadline.Token);
            options.Progress?.Invoke(new DownloadProgress(file.Length, total));
            while (true)
            {
                deadline.CancelAfter(options.Timeout);
                int read = await body.ReadAsync(buffer, deadline.Token);
                if (read == 0) break;
                if (total is { } limit && file.Length + read > limit)
                    throw new DownloadException($"{response.RequestMessage?.RequestUri}: the server sends more than the {limit} bytes the file has");
                await file.WriteAsync(buffer.AsMemory(0, read), cancellation);
                hash.AppendData(buffer, 0, read);
                if (clock.Elapsed - lastReport >= TimeSpan.FromMilliseconds(100))
                {
                    lastReport = clock.Elapsed;
                    options.Progress?.Invoke(new DownloadProgress(file.Length, total));
                }
            }
        }
        catch (OperationCanceledException) when (!cancellation.IsCancellationRequested)
        {
            throw new TransientException($"no data for {options.Timeout.TotalSeconds:0.##} s at byte {file.Length}");
        }
        catch (Exception e) when (e is IOException or HttpRequestException && e is not DownloadException)
        {
            throw new TransientException($"the transfer broke at byte {file.Length}: {e.Message}", e);
        }
        finally
        {
            options.Progress?.Invoke(new DownloadProgress(file.Length, total));
        }
    }

    static async Task HashPrefixAsync(Transfer transfer, CancellationToken cancellation)
    {
        var buffer = new byte[1 << 20];
        transfer.File.Position = 0;
        int read;
        while ((read = await transfer.File.ReadAsync(buffer, cancellation)) > 0) transfer.Hash.AppendData(buffer, 0, read);
    }

    sealed class TransientException(string message, Exception? inner = null) : Exception(message, inner);

    /// <summary>The .part file, the digest of what it holds, and how much of it came from before this call.</summary>
    sealed class Transfer(FileStream file, HashAlgorithmName algorithm) : IDisposable
    {
        public FileStream File { get; } = file;
        public IncrementalHash Hash { get; } = IncrementalHash.CreateHash(algorithm);
        public long ResumedFrom { get; set; }

        public void Restart()
        {
            File.SetLength(0);
            File.Position = 0;
            Hash.GetHashAndReset();
            ResumedFrom = 0;
        }

        public void Dispose()
        {
            File.Dispose();
            Hash.Dispose();
        }
    }
}
