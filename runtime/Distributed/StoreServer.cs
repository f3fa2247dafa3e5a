using System.Net;
using System.Net.NetworkInformation;
using System.Net.Sockets;
using System.Security.Cryptography;
using static Medformer.Runtime.Distributed.StoreProtocol;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// The rendezvous key-value store, hosted by rank 0 at MASTER_ADDR:MASTER_PORT (torch.distributed's TCPStore, in
/// small): set (write-once), blocking get with a timeout, and the ranks whose connection closed without a goodbye,
/// which is how a failed collective names the rank that died. It listens on MASTER_ADDR's interface only, serves
/// only peers that prove the job's secret (<see cref="StoreProtocol"/>), and treats anything malformed as that
/// connection's fault: the connection closes, the store goes on. One thread per connection, at most
/// <see cref="MaxConnections"/> of them; values stay in memory.
/// </summary>
sealed class StoreServer : IDisposable
{
    readonly TcpListener listener;
    readonly Thread acceptor;
    readonly byte[] secret;
    readonly int worldSize;
    readonly Dictionary<string, byte[]> values = [];
    readonly SortedSet<int> dead = [];
    readonly HashSet<int> present = [];
    readonly List<TcpClient> connections = [];
    readonly object gate = new();
    long storedBytes;
    bool closed;

    public StoreServer(IPAddress address, int port, byte[] secret, int worldSize, TimeSpan? handshakeTimeout = null)
    {
        this.secret = secret;
        this.worldSize = worldSize;
        HandshakeTimeout = handshakeTimeout ?? StoreProtocol.HandshakeTimeout;
        // Every rank holds one connection; the slack covers reconnects racing a close and a stray probe or two.
        MaxConnections = 4 * worldSize + 16;
        listener = new TcpListener(address, port);
        try
        {
            listener.Start(backlog: 1024);
        }
        catch (SocketException e)
        {
            throw new DistributedException($"rank 0 cannot host the rendezvous store on {address}:{port}: {e.Message} (another run on this port? " +
                "set MASTER_PORT or --master-port)", e);
        }
        EndPoint = (IPEndPoint)listener.LocalEndpoint;
        acceptor = new Thread(Accept) { IsBackground = true, Name = "medformer store" };
        acceptor.Start();
    }

    public IPEndPoint EndPoint { get; }
    public int Port => EndPoint.Port;
    public int MaxConnections { get; }

    /// <summary>How long a peer may take to prove the secret (<see cref="StoreProtocol.HandshakeTimeout"/>; tests shorten it).</summary>
    public TimeSpan HandshakeTimeout { get; }

    /// <summary>
    /// The address to listen on for MASTER_ADDR: an IP literal as it is, "localhost" as 127.0.0.1, and a host name
    /// as the first address it resolves to that belongs to this machine (one off loopback before loopback: Debian
    /// maps the host name to 127.0.1.1 too, which the other nodes cannot reach).
    /// </summary>
    public static IPAddress BindAddress(string masterAddress)
    {
        if (masterAddress == "localhost") return IPAddress.Loopback;
        if (IPAddress.TryParse(masterAddress, out var literal)) return literal;
        IPAddress[] resolved;
        try
        {
            resolved = Dns.GetHostAddresses(masterAddress);
        }
        catch (SocketException e)
        {
            throw new DistributedException($"MASTER_ADDR {masterAddress} does not resolve ({e.Message})", e);
        }
        var local = NetworkInterface.GetAllNetworkInterfaces().SelectMany(i => i.GetIPProperties().UnicastAddresses).Select(u => u.Address).ToHashSet();
        return resolved.FirstOrDefault(a => local.Contains(a) && !IPAddress.IsLoopback(a))
            ?? resolved.FirstOrDefault(IPAddress.IsLoopback)
            ?? throw new
                DistributedException($"MASTER_ADDR {masterAddress} resolves to {string.Join(", ", resolved.Select(a => a.ToString()))}, none of them this " +
                    "machine's, but rank 0 hosts the store there");
    }

    void Accept()
    {
        while (true)
        {
            TcpClient client;
            try
            {
                client = listener.AcceptTcpClient();
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException or InvalidOperationException)
            {
                lock (gate) if (closed) return;
                Thread.Sleep(10);   // a connection reset before it was accepted, or out of descriptors: try again
                continue;
            }
            try
            {
                client.NoDelay = true;
                lock (gate)
                {
                    if (closed)
                    {
                        client.Dispose();
                        return;
                    }
                    if (connections.Count >= MaxConnections)
                    {
                        client.Dispose();
                        continue;
                    }
                    connections.Add(client);
                }
                new Thread(() => Serve(client)) { IsBackground = true, Name = "medformer store connection" }.Start();
            }
            catch (Exception)
            {
                // This connection only (a thread that could not start, a socket already gone).
                Forget(client);
            }
        }
    }

    void Serve(TcpClient client)
    {
        int? rank = null;
        bool goodbye = false;
        try
        {
            using var stream = client.GetStream();
            using var reader = new BinaryReader(stream);
            using var writer = new BinaryWriter(stream);
            if (!Authenticate(client, reader, writer)) return;
            while (true)
            {
                var op = (Op)reader.ReadByte();
                switch (op)
                {
                    case Op.Set:
                        OnSet(reader, writer);
                        break;
                    case Op.Get:
                        OnGet(reader, writer);
                        break;
                    case Op.Hello:
                        OnHello(reader, writer, ref rank);
                        break;
                    case Op.Dead:
                        OnDead(reader, writer);
                        break;
                    case Op.Bye:
                        goodbye = true;
                        writer.Write(Ok);
                        return;
                    default:
                        return;  // not our protocol: drop the connection
                }
                writer.Flush();
            }
        }
        catch (Exception)
        {
            // The peer went away or sent something malformed: that connection ends, the store goes on. A rank
            // that never said goodbye counts as dead (below).
        }
        finally
        {
            Leave(rank, goodbye);
            Forget(client);
        }
    }

    void OnSet(BinaryReader reader, BinaryWriter writer)
    {
        string key = ReadKey(reader);
        byte[] value = ReadValue(reader);
        bool stored;
        lock (gate)
        {
            // Write-once: a rendezvous key names one rank's addresses, which nobody may replace.
            stored = values.Count < MaxKeys && storedBytes + value.Length <= MaxStoredBytes && values.TryAdd(key, value);
            if (stored)
            {
                storedBytes += value.Length;
                Monitor.PulseAll(gate);
            }
        }
        writer.Write(stored ? Ok : Refused);
    }

    void OnGet(BinaryReader reader, BinaryWriter writer)
    {
        string key = ReadKey(reader);
        var deadline = DateTime.UtcNow + ReadWait(reader);
        byte[]? value;
        lock (gate)
            while (!values.TryGetValue(key, out value) && !closed && Wait(deadline)) { }
        writer.Write(value is null ? Missing : Ok);
        writer.Write(value?.Length ?? 0);
        if (value is not null) writer.Write(value);
    }

    // The rank is the connection's as soon as it is accepted, before the answer is written: a peer gone by then is marked dead.
    void OnHello(BinaryReader reader, BinaryWriter writer, ref int? rank)
    {
        int claimed = reader.ReadInt32();
        bool accepted;
        lock (gate)
            // One live connection per rank: a second RANK=r is a misconfigured job, and must not mark r dead on leaving.
            accepted = rank is null && claimed >= 0 && claimed < worldSize && present.Add(claimed);
        if (accepted) rank = claimed;
        writer.Write(accepted ? Ok : Refused);
    }

    void OnDead(BinaryReader reader, BinaryWriter writer)
    {
        var deadline = DateTime.UtcNow + ReadWait(reader);
        int[] ranks;
        lock (gate)
        {
            while (dead.Count == 0 && !closed && Wait(deadline)) { }
            ranks = [.. dead];
        }
        writer.Write(Ok);
        writer.Write(ranks.Length);
        foreach (int r in ranks) writer.Write(r);
    }

    /// <summary>A connection's end: its rank is free again, and dead unless it said goodbye (or the store is closing).</summary>
    void Leave(int? rank, bool goodbye)
    {
        lock (gate)
        {
            if (rank is { } r)
            {
                present.Remove(r);
                if (!goodbye && !closed)
                {
                    dead.Add(r);
                    Monitor.PulseAll(gate);
                }
            }
        }
    }

    /// <summary>The challenge-response; a peer that does not answer in time or proves the wrong secret is closed.</summary>
    bool Authenticate(TcpClient client, BinaryReader reader, BinaryWriter writer)
    {
        client.ReceiveTimeout = client.SendTimeout = (int)HandshakeTimeout.TotalMilliseconds;
        byte[] serverNonce = RandomNumberGenerator.GetBytes(NonceLength);
        writer.Write(Magic);
        writer.Write(serverNonce);
        writer.Flush();
        // The deadline covers the whole exchange, not each read: a peer trickling one byte at a time is still cut off.
        var deadline = DateTime.UtcNow + HandshakeTimeout;
        using var timer = new Timer(_ => client.Dispose(), null, HandshakeTimeout, Timeout.InfiniteTimeSpan);
        byte[] clientNonce = ReadExactly(reader, NonceLength);
        byte[] proof = ReadExactly(reader, ProofLength);
        if (!Matches(proof, Proof(secret, "client", serverNonce, clientNonce)) || DateTime.UtcNow > deadline)
        {
            writer.Write(Refused);
            writer.Flush();
            return false;
        }
        timer.Change(Timeout.Infinite, Timeout.Infinite);
        writer.Write(Ok);
        writer.Write(Proof(secret, "server", serverNonce, clientNonce));
        writer.Flush();
        // Ranks may be idle between requests for a whole training run; a peer that stops reading replies is cut off.
        client.ReceiveTimeout = 0;
        client.SendTimeout = 60_000;
        return true;
    }

    void Forget(TcpClient client)
    {
        lock (gate) connections.Remove(client);
        client.Dispose();
    }

    bool Wait(DateTime deadline)
    {
        var left = deadline - DateTime.UtcNow;
        if (left <= TimeSpan.Zero) return false;
        Monitor.Wait(gate, left < TimeSpan.FromSeconds(1) ? left : TimeSpan.FromSeconds(1));
        return true;
    }

    public void Dispose()
    {
        TcpClient[] open;
        lock (gate)
        {
            if (closed) return;
            closed = true;
            Monitor.PulseAll(gate);
            open = [.. connections];
        }
        listener.Stop();
        foreach (var client in open) client.Dispose();
    }
}
