using System.Buffers.Binary;
using System.IO.Compression;

namespace Medformer.Datasets.Formats;

/// <summary>
/// An IDX array (the format of MNIST, Fashion-MNIST and KMNIST; LeCun's "idx3-ubyte" files), plain or gzipped:
/// two zero bytes, a type byte (0x08 u8, 0x09 i8, 0x0B i16, 0x0C i32, 0x0D f32, 0x0E f64), the number of
/// dimensions, each dimension as a big-endian u32, then the values, big-endian, C order. Values are returned as
/// float32.
/// </summary>
public sealed record Idx(long[] Shape, float[] Values)
{
    public static Idx Read(string path)
    {
        using var file = File.OpenRead(path);
        Span<byte> head = stackalloc byte[2];
        int got = file.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        file.Position = 0;
        // Gzip's magic 1f 8b; an IDX file starts with two zero bytes.
        using Stream stream = got == 2 && head[0] == 0x1f && head[1] == 0x8b ? new GZipStream(file, CompressionMode.Decompress) : file;
        try
        {
            return Read(stream, path, got == 2 && head[0] == 0x1f ? long.MaxValue : file.Length);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{path}: not a valid gzip stream: {e.Message}", e);
        }
    }

    /// <param name="available">Bytes the stream can hold at most (the file's length; unknown for gzip), checked before allocating.</param>
    public static Idx Read(Stream stream, string source, long available = long.MaxValue)
    {
        Span<byte> magic = stackalloc byte[4];
        ReadExactly(stream, magic, source, "the magic number");
        if (magic[0] != 0 || magic[1] != 0) throw Bad(source, $"not an IDX file (magic {System.Convert.ToHexString(magic)}; expected 0000TTNN)");
        int itemSize = magic[2] switch
        {
            0x08 or 0x09 => 1,
            0x0B => 2,
            0x0C or 0x0D => 4,
            0x0E => 8,
            _ => throw Bad(source, $"unknown IDX value type 0x{magic[2]:X2} (0x08, 0x09, 0x0B, 0x0C, 0x0D and 0x0E exist)"),
        };
        int rank = magic[3];
        if (rank is 0 or > 8) throw Bad(source, $"{rank} dimensions (1 to 8 expected)");
        var shape = new long[rank];
        Span<byte> dim = stackalloc byte[4];
        for (int i = 0; i < rank; i++)
        {
            ReadExactly(stream, dim, source, $"dimension {i}");
            shape[i] = BinaryPrimitives.ReadUInt32BigEndian(dim);
        }
        long count = 1;
        foreach (long n in shape)
        {
            count *= n;
            if (count > Array.MaxLength) throw Bad(source, $"shape [{string.Join(", ", shape)}] holds more values than an array can");
        }
        long bytes = count * itemSize;
        if (available != long.MaxValue && 4 + 4L * rank + bytes > available)
            throw Bad(source, $"shape [{string.Join(", ", shape)}] needs {bytes} bytes of values, the file has {available - 4 - 4L * rank}");
        var values = new float[count];
        var buffer = new byte[Math.Min(bytes, 1 << 20) + itemSize];
        long done = 0;
        while (done < count)
        {
            int chunk = (int)Math.Min(count - done, buffer.Length / itemSize);
            ReadExactly(stream, buffer.AsSpan(0, chunk * itemSize), source, $"values {done}..{done + chunk} of {count}");
            Convert(magic[2], buffer.AsSpan(0, chunk * itemSize), values.AsSpan((int)done, chunk));
            done += chunk;
        }
        return new Idx(shape, values);
    }

    static void Convert(byte type, ReadOnlySpan<byte> raw, Span<float> into)
    {
        for (int i = 0; i < into.Length; i++)
            into[i] = type switch
            {
                0x08 => raw[i],
                0x09 => (sbyte)raw[i],
                0x0B => BinaryPrimitives.ReadInt16BigEndian(raw[(2 * i)..]),
                0x0C => BinaryPrimitives.ReadInt32BigEndian(raw[(4 * i)..]),
                0x0D => BinaryPrimitives.ReadSingleBigEndian(raw[(4 * i)..]),
                _ => (float)BinaryPrimitives.ReadDoubleBigEndian(raw[(8 * i)..]),
            };
    }

    static void ReadExactly(Stream stream, Span<byte> into, string source, string what)
    {
        int got = stream.ReadAtLeast(into, into.Length, throwOnEndOfStream: false);
        if (got < into.Length) throw Bad(source, $"ends in {what} ({got} of {into.Length} bytes)");
    }

    static InvalidDataException Bad(string source, string what) => new($"{source}: {what}");
}
