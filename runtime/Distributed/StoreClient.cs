using System.Net.Sockets;
using System.Security.Cryptography;
using static Medformer.Runtime.Distributed.StoreProtocol;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// A connection to rank 0's <see cref="StoreServer"/>: what Gloo's rendezvous exchanges addresses through (via the
/// shim's callbacks), and what a failed collective asks for the ranks that died. It proves the job's secret and
/// checks that the store knows it too (<see cref="StoreProtocol"/>).
/// </summary>
sealed class StoreClient : IDisposable
{
    readonly TcpClient client;
    readonly BinaryReader reader;
    readonly BinaryWriter writer;
    readonly Lock gate = new();
    readonly string address;
    readonly int worldSize;

    /// <summary>Connects, retrying until <paramref name="timeout"/> (rank 0 may start later than the others).</summary>
    public StoreClient(string host, int port, int rank, int worldSize, byte[] secret, TimeSpan timeout)
    {
        address = $"{host}:{port}";
        this.worldSize = worldSize;
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
                    throw new DistributedException($"rank {rank} could not reach the rendezvous store of rank 0 at {address} within " +
                        $"{timeout.TotalSeconds:F0} s ({e.Message}); is rank 0 running, and are MASTER_ADDR and MASTER_PORT right?", e);
                Thread.Sleep(100);
            }
        }
        var stream = client.GetStream();
        reader = new BinaryReader(stream);
        writer = new BinaryWriter(stream);
        try
        {
            Authenticate(rank, secret);
        }
        catch
        {
            client.Dispose();
            throw;
        }
        byte hello = 0;
        Request(Op.Hello, w => w.Write(rank), TimeSpan.FromSeconds(30), r => hello = r.ReadByte());
        if (hello != Ok)
        {
            client.Dispose();
            throw new DistributedException($"rank {rank}: the rendezvous store at {address} refused RANK={rank}: another process of this job has that rank, " +
                $"or it is not below WORLD_SIZE={worldSize}");
        }
    }

    void Authenticate(int rank, byte[] secret)
    {
        client.ReceiveTimeout = client.SendTimeout = (int)HandshakeTimeout.TotalMilliseconds;
        try
        {
            if (!ReadExactly(reader, Magic.Length).AsSpan().SequenceEqual(Magic))
                throw new DistributedException($"rank {rank}: {address} is not a medformer rendezvous store " +
                    "(MASTER_ADDR/MASTER_PORT point at another service)");
            byte[] serverNonce = ReadExactly(reader, NonceLength);
            byte[] clientNonce = RandomNumberGenerator.GetBytes(NonceLength);
            writer.Write(clientNonce);
            writer.Write(Proof(secret, "client", serverNonce, clientNonce));
            writer.Flush();
            if (reader.ReadByte() != Ok)
                throw new DistributedException($"rank {rank}: the rendezvous store at {address} refused this rank's secret: {StoreSecret.Variable} (or the " +
                    $"file {StoreSecret.FileVariable} names) differs from rank 0's");
            if (!Matches(ReadExactly(reader, ProofLength), Proof(secret, "server", serverNonce, clientNonce)))
                throw new DistributedException($"rank {rank}: the rendezvous store at {address} does not know this job's secret " +
                    "(another job's store on MASTER_PORT?)");
        }
        catch (Exception e) when (e is IOException or EndOfStreamException or SocketException)
        {
            throw new DistributedException($"rank {rank}: the rendezvous store at {address} closed the connection during the handshake ({e.Message}); too " +
                "many connections, or not a medformer store?", e);
        }
    }

    public TimeSpan Timeout { get; }

    /// <summary>The last failure inside a native callback, which the shim reports only as "store: ..." .</summary>
    public Exception? LastError { get; private set; }

    internal int Failed(Exception e)
    {
        LastError = e;
        return 1;
    }

    public void Set(string key, byte[] value)
    {
        if (value.Length > MaxValueBytes) throw new ArgumentException($"store value for '{key}' of {value.Length} bytes is over {MaxValueBytes}");
        byte status = Ok;
        Request(Op.Set, w =>
        {
            WriteKey(w, key);
            w.Write(value.Length);
            w.Write(value);
        }, Timeout, r => status = r.ReadByte());
        if (status != Ok) throw new DistributedException($"rendezvous store at {address}: '{key}' is set already (keys are write-once), or the store is full");
    }

    /// <summary>The value of <paramref name="key"/>, waiting up to <paramref name="timeout"/> for some rank to set it.</summary>
    public byte[] Get(string key, TimeSpan timeout)
    {
        byte[]? value = null;
        Request(Op.Get, w =>
        {
            WriteKey(w, key);
            WriteWait(w, timeout);
        }, Clamped(timeout) + TimeSpan.FromSeconds(30), r =>
        {
            byte missing = r.ReadByte();
            byte[] data = ReadValue(r);
            if (missing == Ok) value = data;
        });
        return value ??
            throw new TimeoutException($"rendezvous store at {address}: '{key}' was not set within {timeout.TotalSeconds:F0} s (a rank did not arrive)");
    }

    /// <summary>The ranks whose connection to the store closed without a goodbye, waiting up to <paramref name="wait"/> for one.</summary>
    public int[] DeadRanks(TimeSpan wait)
    {
        int[] ranks = [];
        Request(Op.Dead, w => WriteWait(w, wait), Clamped(wait) + TimeSpan.FromSeconds(10), r =>
        {
            r.ReadByte();
            int count = r.ReadInt32();
            if (count < 0 || count > worldSize) throw new InvalidDataException($"the store sent {count} dead ranks of {worldSize}");
            ranks = new int[count];
            for (int i = 0; i < ranks.Length; i++) ranks[i] = r.ReadInt32();
        });
        return ranks;
    }

    static TimeSpan Clamped(TimeSpan wait) => wait < MaxWait ? wait : MaxWait;

    void Request(Op op, Action<BinaryWriter> write, TimeSpan timeout, Action<BinaryReader>? read = null)
    {
        lock (gate)
        {
            try
            {
                client.ReceiveTimeout = (int)Math.Min(int.MaxValue, timeout.TotalMilliseconds);
                client.SendTimeout = 60_000;
                writer.Write((byte)op);
                write(writer);
                writer.Flush();
                if (read is null) reader.ReadByte();
                else read(reader);
            }
            catch (Exception e) when (e is IOException or EndOfStreamException or SocketException or ObjectDisposedException or InvalidDataException)
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
            Request(Op.Bye, _ => { }, TimeSpan.FromSeconds(5));
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
