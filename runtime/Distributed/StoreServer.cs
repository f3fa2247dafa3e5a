using System.Net;
using System.Net.Sockets;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// The rendezvous key-value store, hosted by rank 0 at MASTER_ADDR:MASTER_PORT (torch.distributed's TCPStore, in
/// small): set, blocking get with a timeout, and the ranks whose connection closed without a goodbye, which is how
/// a failed collective names the rank that died. One thread per connection; values stay in memory.
/// </summary>
sealed class StoreServer : IDisposable
{
    internal enum Op : byte { Set = 1, Get = 2, Hello = 3, Dead = 4, Bye = 5 }

    readonly TcpListener listener;
    readonly Thread acceptor;
    readonly Dictionary<string, byte[]> values = [];
    readonly SortedSet<int> dead = [];
    readonly List<TcpClient> connections = [];
    readonly object gate = new();
    bool closed;

    public StoreServer(int port)
    {
        listener = new TcpListener(IPAddress.Any, port);
        try
        {
            listener.Start(backlog: 1024);
        }
        catch (SocketException e)
        {
            throw new DistributedException($"rank 0 cannot host the rendezvous store on port {port}: {e.Message} (another run on this port? set MASTER_PORT or --master-port)", e);
        }
        Port = ((IPEndPoint)listener.LocalEndpoint).Port;
        acceptor = new Thread(Accept) { IsBackground = true, Name = "medformer store" };
        acceptor.Start();
    }

    public int Port { get; }

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
                return;
            }
            client.NoDelay = true;
            lock (gate)
            {
                if (closed)
                {
                    client.Dispose();
                    return;
                }
                connections.Add(client);
            }
            new Thread(() => Serve(client)) { IsBackground = true, Name = "medformer store connection" }.Start();
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
            while (true)
            {
                var op = (Op)reader.ReadByte();
                switch (op)
                {
                    case Op.Set:
                    {
                        string key = reader.ReadString();
                        byte[] value = reader.ReadBytes(reader.ReadInt32());
                        lock (gate)
                        {
                            values[key] = value;
                            Monitor.PulseAll(gate);
                        }
                        writer.Write((byte)0);
                        break;
                    }
                    case Op.Get:
                    {
                        string key = reader.ReadString();
                        var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(reader.ReadInt64());
                        byte[]? value;
                        lock (gate)
                            while (!values.TryGetValue(key, out value) && !closed && Wait(deadline)) { }
                        writer.Write((byte)(value is null ? 1 : 0));
                        writer.Write(value?.Length ?? 0);
                        if (value is not null) writer.Write(value);
                        break;
                    }
                    case Op.Hello:
                        rank = reader.ReadInt32();
                        writer.Write((byte)0);
                        break;
                    case Op.Dead:
                    {
                        var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(reader.ReadInt64());
                        int[] ranks;
                        lock (gate)
                        {
                            while (dead.Count == 0 && !closed && Wait(deadline)) { }
                            ranks = [.. dead];
                        }
                        writer.Write((byte)0);
                        writer.Write(ranks.Length);
                        foreach (int r in ranks) writer.Write(r);
                        break;
                    }
                    case Op.Bye:
                        goodbye = true;
                        writer.Write((byte)0);
                        return;
                    default:
                        return;  // not our protocol: drop the connection
                }
                writer.Flush();
            }
        }
        catch (Exception e) when (e is IOException or EndOfStreamException or ObjectDisposedException or SocketException)
        {
            // The peer went away; below, a rank that never said goodbye counts as dead.
        }
        finally
        {
            lock (gate)
            {
                if (rank is { } r && !goodbye && !closed)
                {
                    dead.Add(r);
                    Monitor.PulseAll(gate);
                }
                connections.Remove(client);
            }
            client.Dispose();
        }
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
