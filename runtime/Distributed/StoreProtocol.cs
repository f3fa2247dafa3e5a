using System.Security.Cryptography;
using System.Text;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// The wire format of the rendezvous store, shared by <see cref="StoreServer"/> and <see cref="StoreClient"/>, and
/// its bounds. A connection opens with a mutual HMAC-SHA256 challenge-response over both sides' nonces (the secret
/// never crosses the wire); then requests are an op byte and little-endian fields, every length checked before
/// anything is allocated.
/// </summary>
static class StoreProtocol
{
    public enum Op : byte { Set = 1, Get = 2, Hello = 3, Dead = 4, Bye = 5 }

    /// <summary>Replies' first byte.</summary>
    public const byte Ok = 0, Missing = 1, Refused = 2;

    public static ReadOnlySpan<byte> Magic => "MFSTORE1"u8;
    public const int NonceLength = 32, ProofLength = 32;

    /// <summary>Gloo's keys are a rank number; its values one address per peer (about 100 bytes each).</summary>
    public const int MaxKeyBytes = 512, MaxValueBytes = 16 << 20, MaxKeys = 1 << 16;

    /// <summary>All values together: the store lives in rank 0's memory, beside the training.</summary>
    public const long MaxStoredBytes = 256L << 20;

    /// <summary>The longest wait a Get or Dead may ask for (a day: longer than any sane collective timeout).</summary>
    public static readonly TimeSpan MaxWait = TimeSpan.FromDays(1);

    /// <summary>How long a connection may take to prove the secret before it is closed.</summary>
    public static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

    /// <summary>What a side proves it knows the secret with: the role keeps a client's proof from being replayed as the server's.</summary>
    public static byte[] Proof(byte[] secret, string role, ReadOnlySpan<byte> serverNonce, ReadOnlySpan<byte> clientNonce)
    {
        byte[] message = [.. Encoding.ASCII.GetBytes($"medformer store {role}"), .. serverNonce, .. clientNonce];
        return HMACSHA256.HashData(secret, message);
    }

    public static bool Matches(ReadOnlySpan<byte> proof, ReadOnlySpan<byte> expected) => CryptographicOperations.FixedTimeEquals(proof, expected);

    public static void WriteKey(BinaryWriter writer, string key)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(key);
        if (bytes.Length > MaxKeyBytes) throw new ArgumentException($"store key of {bytes.Length} bytes is over {MaxKeyBytes}");
        writer.Write((ushort)bytes.Length);
        writer.Write(bytes);
    }

    public static string ReadKey(BinaryReader reader)
    {
        int length = reader.ReadUInt16();
        if (length > MaxKeyBytes) throw new InvalidDataException($"store key of {length} bytes is over {MaxKeyBytes}");
        return Encoding.UTF8.GetString(ReadExactly(reader, length));
    }

    /// <summary>A length-prefixed value of at most <see cref="MaxValueBytes"/>.</summary>
    public static byte[] ReadValue(BinaryReader reader)
    {
        int length = reader.ReadInt32();
        if (length is < 0 or > MaxValueBytes) throw new InvalidDataException($"store value of {length} bytes is outside [0, {MaxValueBytes}]");
        return ReadExactly(reader, length);
    }

    /// <summary>A wait in milliseconds within [0, <see cref="MaxWait"/>].</summary>
    public static TimeSpan ReadWait(BinaryReader reader)
    {
        long milliseconds = reader.ReadInt64();
        if (milliseconds < 0 || milliseconds > MaxWait.TotalMilliseconds)
            throw new InvalidDataException($"store wait of {milliseconds} ms is outside [0, {MaxWait.TotalMilliseconds}]");
        return TimeSpan.FromMilliseconds(milliseconds);
    }

    public static void WriteWait(BinaryWriter writer, TimeSpan wait) =>
        writer.Write((long)Math.Clamp(wait.TotalMilliseconds, 0, MaxWait.TotalMilliseconds));

    public static byte[] ReadExactly(BinaryReader reader, int count)
    {
        byte[] bytes = new byte[count];
        reader.BaseStream.ReadExactly(bytes);
        return bytes;
    }
}
