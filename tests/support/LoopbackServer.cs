using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Medformer.Tests;

/// <summary>
/// A TCP listener on 127.0.0.1 and a free port that hands each connection to <c>serve</c> on its own task, with a
/// token that is cancelled when the server goes away; the tests' HTTP servers (downloads, MLflow) stand on it.
/// </summary>
sealed class LoopbackServer : IDisposable
{
    readonly TcpListener listener;
    readonly CancellationTokenSource stop = new();
    readonly Func<TcpClient, CancellationToken, Task> serve;
    readonly Task loop;
    bool disposed;

    public LoopbackServer(Func<TcpClient, CancellationToken, Task> serve)
    {
        this.serve = serve;
        listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        loop = Task.Run(AcceptLoop);
    }

    public int Port => ((IPEndPoint)listener.LocalEndpoint).Port;

    async Task AcceptLoop()
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stop.Token);
            }
            catch (Exception) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (SocketException)
            {
                return;
            }
            _ = Task.Run(() => serve(client, stop.Token));
        }
    }

    /// <summary>An HTTP request's head (up to and with the blank line), or null when the peer closes first or it passes 64 KiB.</summary>
    public static async Task<string?> ReadHead(NetworkStream stream)
    {
        var bytes = new List<byte>();
        var one = new byte[1];
        while (bytes.Count < 1 << 16)
        {
            if (await stream.ReadAsync(one) == 0) return null;
            bytes.Add(one[0]);
            int n = bytes.Count;
            if (n >= 4 && bytes[n - 4] == '\r' && bytes[n - 3] == '\n' && bytes[n - 2] == '\r' && bytes[n - 1] == '\n')
                return Encoding.ASCII.GetString([.. bytes]);
        }
        return null;
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        stop.Cancel();
        listener.Stop();
        try
        {
            loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        stop.Dispose();
    }
}
