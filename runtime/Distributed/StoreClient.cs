using System.Net.Sockets;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// A connection to rank 0's <see cref="StoreServer"/>: what Gloo's rendezvous exchanges addresses through (via the
/// shim's callbacks), and what a failed collective asks for the ranks that died.
/// </summary>
sealed class StoreClient : IDisposable
{
    readonly TcpClient client;
    readonly BinaryReader reader;
    readonly BinaryWriter writer;
    readonly Lock gate = new();
    readonly string address;

    /// <summary>Connects, retrying until <paramref name="timeout"/> (rank 0 may start later than the others).</summary>
    public StoreClient(string host, int port, int rank, TimeSpan timeout)
    {
        address = $"{host}:{port}";
        Timeout = timeout;
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var attempt = new TcpClient { NoDelay = true };
            try
            {
                attempt.Connect(host, port);
                client = attempt;
                break;
            }
            catch (SocketException e)
            {
                attempt.Dispose();
                if (DateTime.UtcNow >= deadline)
                    throw new DistributedException($"rank {rank} could not reach the rendezvous store of rank 0 at {address} within {timeout.TotalSeconds:F0} s ({e.Message}); is rank 0 running, and are MASTER_ADDR and MASTER_PORT right?", e);
                Thread.Sleep(100);
            }
        }
        var stream = client.GetStream();
        reader = new BinaryReader(stream);
        writer = new BinaryWriter(stream);
        Request(StoreServer.Op.Hello, w => w.Write(rank), TimeSpan.FromSeconds(30));
    }

    public TimeSpan Timeout { get; }

    /// <summary>The last failure inside a native callback, which the shim reports only as "store: ..." .</summary>
    public Exception? LastError { get; private set; }

    internal int Failed(Exception e)
    {
        LastError = e;
        return 1;
    }

    public void Set(string key, byte[] value) => Request(StoreServer.Op.Set, w =>
    {
        w.Write(key);
        w.Write(value.Length);
        w.Write(value);
    }, Timeout);

    /// <summary>The value of <paramref name="key"/>, waiting up to <paramref name="timeout"/> for some rank to set it.</summary>
    public byte[] Get(string key, TimeSpan timeout)
    {
        byte[]? value = null;
        Request(StoreServer.Op.Get, w =>
        {
            w.Write(key);
            w.Write((long)timeout.TotalMilliseconds);
        }, timeout + TimeSpan.FromSeconds(30), r =>
        {
            byte missing = r.ReadByte();
            byte[] data = r.ReadBytes(r.ReadInt32());
            if (missing == 0) value = data;
        });
        return value ?? throw new TimeoutException($"rendezvous store at {address}: '{key}' was not set within {timeout.TotalSeconds:F0} s (a rank did not arrive)");
    }

    /// <summary>The ranks whose connection to the store closed without a goodbye, waiting up to <paramref name="wait"/> for one.</summary>
    public int[] DeadRanks(TimeSpan wait)
    {
        int[] ranks = [];
        Request(StoreServer.Op.Dead, w => w.Write((long)wait.TotalMilliseconds), wait + TimeSpan.FromSeconds(10), r =>
        {
            r.ReadByte();
            ranks = new int[r.ReadInt32()];
            for (int i = 0; i < ranks.Length; i++) ranks[i] = r.ReadInt32();
        });
        return ranks;
    }

    void Request(StoreServer.Op op, Action<BinaryWriter> write, TimeSpan timeout, Action<BinaryReader>? read = null)
    {
        lock (gate)
        {
            try
            {
                client.ReceiveTimeout = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
                writer.Write((byte)op);
                write(writer);
                writer.Flush();
                if (read is null) reader.ReadByte();
                else read(reader);
            }
            catch (Exception e) when (e is IOException or EndOfStreamException or SocketException or ObjectDisposedException)
            {
                throw new StoreLostException($"lost the rendezvous store on rank 0 at {address} ({e.Message})", e);
            }
        }
    }

    /// <summary>Says goodbye, so that the server does not count this rank as dead.</summary>
    public void Dispose()
    {
        try
        {
            Request(StoreServer.Op.Bye, _ => { }, TimeSpan.FromSeconds(5));
        }
        catch (StoreLostException)
        {
            // rank 0 is gone already
        }
        client.Dispose();
    }
}

/// <summary>The connection to rank 0's store broke: rank 0 died or is unreachable.</summary>
sealed class StoreLostException(string message, Exception inner) : IOException(message, inner);
