using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Medformer.Runtime.Distributed;
using Xunit;
using static Medformer.Runtime.Distributed.StoreProtocol;

namespace Medformer.Tests.Distributed;

/// <summary>
/// The rendezvous store against hostile peers, in process: raw sockets that send garbage, lie about lengths, ask
/// for absurd waits, hold connections, or know the wrong secret. After each, the store still serves a rank.
/// </summary>
public sealed class StoreTests : IDisposable
{
    static readonly byte[] Secret = Encoding.UTF8.GetBytes("0123456789abcdef-test-secret");
    readonly StoreServer server = new(IPAddress.Loopback, 0, Secret, worldSize: 4, handshakeTimeout: TimeSpan.FromSeconds(1));

    public void Dispose() => server.Dispose();

    StoreClient Client(int rank = 0, byte[]? secret = null) =>
        new("127.0.0.1", server.Port, rank, 4, secret ?? Secret, TimeSpan.FromSeconds(5));

    /// <summary>A rank can still set and get (each call with its own key, as keys are write-once).</summary>
    void AssertServes()
    {
        using var client = Client();
        string key = "alive " + Guid.NewGuid();
        client.Set(key, [1, 2, 3]);
        Assert.Equal([1, 2, 3], client.Get(key, TimeSpan.FromSeconds(1)));
    }

    /// <summary>A raw connection, authenticated with the secret or not.</summary>
    (TcpClient Socket, NetworkStream Stream) Raw(bool authenticate)
    {
        var socket = new TcpClient();
        socket.Connect(IPAddress.Loopback, server.Port);
        socket.ReceiveTimeout = 5000;
        var stream = socket.GetStream();
        if (!authenticate) return (socket, stream);
        byte[] hello = new byte[Magic.Length + NonceLength];
        stream.ReadExactly(hello);
        byte[] clientNonce = RandomNumberGenerator.GetBytes(NonceLength);
        stream.Write(clientNonce);
        stream.Write(Proof(Secret, "client", hello.AsSpan(Magic.Length), clientNonce));
        byte[] reply = new byte[1 + ProofLength];
        stream.ReadExactly(reply);
        Assert.Equal(Ok, reply[0]);
        return (socket, stream);
    }

    /// <summary>Sends <paramref name="bytes"/>, ends the sending side and reads until the server closes (true) or 5 s pass (false).</summary>
    static bool SendAndSeeClosed(TcpClient socket, NetworkStream stream, byte[] bytes)
    {
        try
        {
            stream.Write(bytes);
            socket.Client.Shutdown(SocketShutdown.Send);
            var buffer = new byte[4096];
            while (stream.Read(buffer) > 0) { }
            return true;
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.TimedOut })
        {
            return false;
        }
        catch (IOException)
        {
            return true;   // reset by the server
        }
        finally
        {
            socket.Dispose();
        }
    }

    static byte[] Message(Action<BinaryWriter> write)
    {
        var memory = new MemoryStream();
        using (var writer = new BinaryWriter(memory)) write(writer);
        return memory.ToArray();
    }

    static byte[] KeyBytes(string key) => [.. BitConverter.GetBytes((ushort)key.Length), .. Encoding.UTF8.GetBytes(key)];

    public static TheoryData<string, byte[]> Malformed => new()
    {
        { "negative value length", Message(w => { w.Write((byte)Op.Set); w.Write(KeyBytes("k")); w.Write(-1); }) },
        { "huge value length", Message(w => { w.Write((byte)Op.Set); w.Write(KeyBytes("k")); w.Write(int.MaxValue); }) },
        { "huge key length", Message(w => { w.Write((byte)Op.Get); w.Write(ushort.MaxValue); w.Write(new byte[100]); }) },
        { "absurd get timeout", Message(w => { w.Write((byte)Op.Get); w.Write(KeyBytes("k")); w.Write(long.MaxValue); }) },
        { "negative get timeout", Message(w => { w.Write((byte)Op.Get); w.Write(KeyBytes("k")); w.Write(long.MinValue); }) },
        { "absurd dead timeout", Message(w => { w.Write((byte)Op.Dead); w.Write(long.MaxValue); }) },
        { "rank past the world", Message(w => { w.Write((byte)Op.Hello); w.Write(int.MaxValue); w.Write((byte)Op.Hello); w.Write(-5); }) },
        { "unknown op", [0xFF, 1, 2, 3] },
        { "truncated set", Message(w => { w.Write((byte)Op.Set); w.Write(KeyBytes("k")); w.Write(1000); w.Write(new byte[10]); }) },
    };

    [Theory]
    [MemberData(nameof(Malformed))]
    public void AMalformedRequestClosesThatConnectionOnly(string what, byte[] bytes)
    {
        var (socket, stream) = Raw(authenticate: true);
        Assert.True(SendAndSeeClosed(socket, stream, bytes), $"{what}: the server kept the connection open");
        AssertServes();
    }

    [Fact]
    public void RandomAndMutatedBytesNeverTakeTheStoreDown()
    {
        var random = new Random(27);
        byte[][] valid =
        [
            Message(w => { w.Write((byte)Op.Set); w.Write(KeyBytes("fuzz")); w.Write(3); w.Write(new byte[] { 1, 2, 3 }); }),
            Message(w => { w.Write((byte)Op.Get); w.Write(KeyBytes("fuzz")); w.Write(5L); }),
            Message(w => { w.Write((byte)Op.Hello); w.Write(2); w.Write((byte)Op.Dead); w.Write(1L); }),
            Message(w => w.Write((byte)Op.Bye)),
        ];
        long[] extremes = [-1, 0, 1, int.MaxValue, int.MinValue, long.MaxValue, long.MinValue, 0xFFFF, 0x10000];
        for (int i = 0; i < 300; i++)
        {
            bool authenticate = i % 3 != 0;
            byte[] bytes;
            if (!authenticate || i % 5 == 0)
                bytes = RandomNumberGenerator.GetBytes(random.Next(0, 200));
            else
            {
                bytes = [.. valid[random.Next(valid.Length)]];
                int mutations = random.Next(1, 4);
                for (int m = 0; m < mutations && bytes.Length > 0; m++)
                {
                    int at = random.Next(bytes.Length);
                    switch (random.Next(4))
                    {
                        case 0: bytes[at] = (byte)random.Next(256); break;
                        case 1: bytes = bytes[..at]; break;   // truncated
                        case 2: bytes = [.. bytes, .. RandomNumberGenerator.GetBytes(random.Next(1, 40))]; break;
                        default:
                            byte[] extreme = BitConverter.GetBytes(extremes[random.Next(extremes.Length)]);
                            bytes = [.. bytes[..at], .. extreme, .. bytes[Math.Min(bytes.Length, at + extreme.Length)..]];
                            break;
                    }
                }
            }
            var (socket, stream) = Raw(authenticate);
            Assert.True(SendAndSeeClosed(socket, stream, bytes), $"message {i} ({Convert.ToHexString(bytes)}) left the connection open");
            if (i % 50 == 0) AssertServes();
        }
        AssertServes();
    }

    [Fact]
    public void AClientWithoutTheSecretOrAWrongOneIsRefused()
    {
        var wrong = Assert.Throws<DistributedException>(() => Client(secret: Encoding.UTF8.GetBytes("not-the-secret-at-all")));
        Assert.Contains("refused this rank's secret", wrong.Message);
        var none = Assert.Throws<DistributedException>(() => Client(secret: []));
        Assert.Contains("refused this rank's secret", none.Message);
        AssertServes();
    }

    [Fact]
    public void AStoreWithAnotherSecretIsNotTrusted()
    {
        // The client proves first, so a store with another secret refuses it; the proof the other way covers a
        // store that answers anything: here, one that replays a client's proof as its own.
        using var impostor = new TcpListener(IPAddress.Loopback, 0);
        impostor.Start();
        var serve = new Thread(() =>
        {
            using var peer = impostor.AcceptTcpClient();
            var stream = peer.GetStream();
            stream.Write([.. Magic, .. new byte[NonceLength]]);
            byte[] answer = new byte[NonceLength + ProofLength];
            stream.ReadExactly(answer);
            stream.Write([Ok, .. answer[NonceLength..]]);
            Thread.Sleep(500);
        });
        serve.Start();
        var e = Assert.Throws<DistributedException>(() => new StoreClient("127.0.0.1", ((IPEndPoint)impostor.LocalEndpoint).Port, 1, 4, Secret,
            TimeSpan.FromSeconds(5)));
        Assert.Contains("does not know this job's secret", e.Message);
        serve.Join();
    }

    [Fact]
    public void AnUnauthenticatedConnectionIsCutOff()
    {
        var (socket, stream) = Raw(authenticate: false);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        // Silent but connected (the sending side stays open): only the handshake deadline (1 s here) ends it.
        var buffer = new byte[4096];
        try
        {
            while (stream.Read(buffer) > 0) { }
        }
        catch (IOException e) when (e.InnerException is SocketException { SocketErrorCode: not SocketError.TimedOut })
        {
            // reset by the server
        }
        socket.Dispose();
        Assert.InRange(clock.Elapsed.TotalSeconds, 0.8, 4);
        AssertServes();
    }

    [Fact]
    public void ConnectionsAreCappedAndFreedAgain()
    {
        var idle = Enumerable.Range(0, server.MaxConnections).Select(_ => Raw(authenticate: false)).ToList();
        var (extra, extraStream) = Raw(authenticate: false);
        // Over the cap, a connection is closed at once, before the server's greeting.
        Assert.Equal(0, extraStream.Read(new byte[64]));
        extra.Dispose();
        foreach (var (socket, _) in idle) socket.Dispose();
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(5);
        while (true)
        {
            try
            {
                AssertServes();
                break;
            }
            catch (DistributedException) when (DateTime.UtcNow < deadline)
            {
                Thread.Sleep(50);   // the closed connections' threads are finishing
            }
        }
    }

    [Fact]
    public void KeysAreWriteOnceAndARankConnectsOnce()
    {
        using var first = Client(rank: 1);
        first.Set("rank_1", [7]);
        using var second = Client(rank: 2);
        var e = Assert.Throws<DistributedException>(() => second.Set("rank_1", [8]));
        Assert.Contains("write-once", e.Message);
        Assert.Equal([7], second.Get("rank_1", TimeSpan.Zero));
        var twin = Assert.Throws<DistributedException>(() => Client(rank: 1));
        Assert.Contains("refused RANK=1", twin.Message);
        Assert.Throws<DistributedException>(() => Client(rank: 4));
    }

    [Fact]
    public void TheStoreListensOnMasterAddrOnly()
    {
        Assert.Equal(IPAddress.Loopback, StoreServer.BindAddress("127.0.0.1"));
        Assert.Equal(IPAddress.Loopback, StoreServer.BindAddress("localhost"));
        using var bound = new StoreServer(StoreServer.BindAddress("127.0.0.1"), 0, Secret, 2);
        Assert.Equal(IPAddress.Loopback, bound.EndPoint.Address);
        Assert.NotEqual(IPAddress.Any, bound.EndPoint.Address);
        var e = Assert.Throws<DistributedException>(() => StoreServer.BindAddress("no-such-host.invalid"));
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void TheSecretComesFromTheEnvironmentOrAPrivateFile()
    {
        Assert.Empty(StoreSecret.Resolve(loopback: true, new Dictionary<string, string>()));
        var missing = Assert.Throws<DistributedException>(() => StoreSecret.Resolve(loopback: false, new Dictionary<string, string>()));
        Assert.Contains(StoreSecret.Variable, missing.Message);
        Assert.Contains(StoreSecret.FileVariable, missing.Message);
        Assert.Equal(Secret, StoreSecret.Resolve(false, new Dictionary<string, string> { [StoreSecret.Variable] = Encoding.UTF8.GetString(Secret) }));
        Assert.Throws<DistributedException>(() => StoreSecret.Resolve(true, new Dictionary<string, string> { [StoreSecret.Variable] = "short" }));

        if (OperatingSystem.IsWindows()) return;   // the file's mode is a POSIX one
        string file = Path.Combine(Path.GetTempPath(), $"medformer-secret-{Guid.NewGuid():N}");
        try
        {
            File.WriteAllText(file, Encoding.UTF8.GetString(Secret) + "\n");
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.OtherRead);
            var open = Assert.Throws<DistributedException>(() => StoreSecret.Resolve(false, new Dictionary<string,
                string> { [StoreSecret.FileVariable] = file }));
            Assert.Contains("chmod 600", open.Message);
            File.SetUnixFileMode(file, UnixFileMode.UserRead | UnixFileMode.UserWrite);
            Assert.Equal(Secret, StoreSecret.Resolve(false, new Dictionary<string, string> { [StoreSecret.FileVariable] = file }));
        }
        finally
        {
            File.Delete(file);
        }
        Assert.NotEqual(StoreSecret.Generate(), StoreSecret.Generate());
    }

    [Fact]
    public void AMultiNodeLaunchWithoutASecretIsRefusedBeforeAnyRankStarts()
    {
        if (StoreSecret.IsConfigured()) return;   // a secret in the test environment would let the launch go on
        var e = Assert.Throws<ArgumentException>(() => LocalLauncher.Run("/bin/false", [], new LaunchOptions(1, Nodes: 2, MasterAddress: "10.0.0.1"),
            _ => { }));
        Assert.Contains(StoreSecret.Variable, e.Message);
    }
}
