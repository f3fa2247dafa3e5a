using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Medformer.Tests;

/// <summary>What the test server was asked: the request's number (from 1), path and Range start.</summary>
sealed record TestRequest(int Number, string Path, long? RangeFrom);

/// <summary>
/// What the test server answers. <see cref="Body"/> is sent after the headers, whose Content-Length is its full
/// length (or <see cref="DeclaredLength"/>); <see cref="SendOnly"/> cuts it short and then closes the connection
/// (a dropped transfer) or, with <see cref="Stall"/>, keeps it open in silence (a stalled server).
/// </summary>
sealed record TestResponse(int Status, byte[] Body)
{
    public string? ContentRange { get; init; }
    public long? DeclaredLength { get; init; }
    public int? SendOnly { get; init; }
    public bool Stall { get; init; }

    /// <summary>Silence before the headers.</summary>
    public bool StallBeforeHeaders { get; init; }

    /// <summary>Sends the body in 16 KiB pieces with this pause between them (a slow link), when set.</summary>
    public TimeSpan? Trickle { get; init; }

    /// <summary>The file, honouring a Range request with 206 when <paramref name="honourRange"/>.</summary>
    public static TestResponse File(byte[] content, TestRequest request, bool honourRange = true)
    {
        if (request.RangeFrom is not { } from || !honourRange) return new TestResponse(200, content);
        if (from >= content.Length) return new TestResponse(416, []) { ContentRange = $"bytes */{content.Length}" };
        return new TestResponse(206, content[(int)from..]) { ContentRange = $"bytes {from}-{content.Length - 1}/{content.Length}" };
    }
}

/// <summary>
/// A minimal HTTP/1.1 server on 127.0.0.1 and a free port, one response per connection, for download tests: each
/// request goes to a function that decides the answer, so a test can drop, stall, corrupt or refuse.
/// </summary>
sealed class TestHttpServer : IDisposable
{
    readonly LoopbackServer server;
    readonly Func<TestRequest, TestResponse> respond;
    readonly List<TestRequest> requests = [];

    public TestHttpServer(Func<TestRequest, TestResponse> respond)
    {
        this.respond = respond;
        server = new LoopbackServer(Serve);
    }

    public int Port => server.Port;

    public string BaseUrl => $"http://127.0.0.1:{Port}";

    public Uri Url(string path) => new($"{BaseUrl}/{path.TrimStart('/')}");

    public IReadOnlyList<TestRequest> Requests
    {
        get { lock (requests) return [.. requests]; }
    }

    async Task Serve(TcpClient client, CancellationToken stopping)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await LoopbackServer.ReadHead(stream);
                if (head == null) return;
                var lines = head.Split("\r\n");
                string path = lines[0].Split(' ')[1];
                long? rangeFrom = null;
                foreach (var line in lines.Skip(1))
                    if (line.StartsWith("Range:", StringComparison.OrdinalIgnoreCase))
                    {
                        string value = line["Range:".Length..].Trim();
                        rangeFrom = long.Parse(value["bytes=".Length..].Split('-')[0]);
                    }
                TestRequest request;
                lock (requests)
                {
                    request = new TestRequest(requests.Count + 1, path, rangeFrom);
                    requests.Add(request);
                }
                var response = respond(request);
                if (response.StallBeforeHeaders)
                {
                    await Task.Delay(Timeout.Infinite, stopping);
                    return;
                }
                var headers = new StringBuilder()
                    .Append($"HTTP/1.1 {response.Status} {Reason(response.Status)}\r\n")
                    .Append($"Content-Length: {response.DeclaredLength ?? response.Body.Length}\r\n")
                    .Append("Content-Type: application/octet-stream\r\nConnection: close\r\n");
                if (response.ContentRange != null) headers.Append($"Content-Range: {response.ContentRange}\r\n");
                headers.Append("\r\n");
                await stream.WriteAsync(Encoding.ASCII.GetBytes(headers.ToString()), stopping);
                int count = Math.Min(response.SendOnly ?? response.Body.Length, response.Body.Length);
                for (int sent = 0; sent < count;)
                {
                    int piece = response.Trickle is null ? count - sent : Math.Min(16 << 10, count - sent);
                    await stream.WriteAsync(response.Body.AsMemory(sent, piece), stopping);
                    sent += piece;
                    if (response.Trickle is { } pause && sent < count) await Task.Delay(pause, stopping);
                }
                await stream.FlushAsync(stopping);
                if (response.Stall) await Task.Delay(Timeout.Infinite, stopping);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
                // The client went away or the server stops: nothing to answer.
            }
        }
    }

    static string Reason(int status) => status switch
    {
        200 => "OK",
        206 => "Partial Content",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };

    public void Dispose() => server.Dispose();
}
