using System.Buffers.Binary;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// NumPy .npy arrays to and from tensors: both byte orders, C and Fortran order, booleans, integers and floats.
/// libtorch has no uint16/32/64, so those widen to int32/int64 (uint64 values must fit in int64).
/// </summary>
public static class Npy
{
    public static Tensor Read(string path)
    {
        using var stream = OpenRead(path);
        return Read(stream, path, stream.Length);
    }

    public static NpyHeader ReadHeader(string path)
    {
        using var stream = OpenRead(path);
        return NpyHeader.Read(stream, path);
    }

    /// <summary>An array from <paramref name="stream"/>, whose total length (if known) bounds what the header may claim.</summary>
    public static Tensor Read(Stream stream, string source, long? length)
    {
        var header = NpyHeader.Read(stream, source);
        long available = length is { } total ? total - header.DataOffset : long.MaxValue;
        if (header.DataLength > available)
            throw NpyHeader.Bad(source,
                $"truncated: the header needs {header.DataLength} bytes of {header.Dtype} [{string.Join(", ", header.Shape)}] but {available} follow it");
        return ReadData(stream, header, source);
    }

    internal static Tensor ReadData(Stream stream, NpyHeader header, string source)
    {
        var storedType = header.Kind switch
        {
            'b' => ScalarType.Byte,
            'u' when header.ItemSize == 1 => ScalarType.Byte,
            'i' or 'u' => header.ItemSize switch { 1 => ScalarType.Int8, 2 => ScalarType.Int16, 4 => ScalarType.Int32, _ => ScalarType.Int64 },
            _ => header.ItemSize switch { 2 => ScalarType.Float16, 4 => ScalarType.Float32, _ => ScalarType.Float64 },
        };
        long[] stored = header.FortranOrder ? header.Shape.Reverse().ToArray() : header.Shape;
        using var scope = NewDisposeScope();
        var raw = empty(stored, dtype: storedType);
        long length = header.DataLength;
        RawData.Fill(stream, raw, header.ByteOrder == '>' && header.ItemSize > 1, header.ItemSize,
            () => NpyHeader.Bad(source, $"truncated: the data ends before byte {length}"));
        Tensor result = header.FortranOrder && stored.Length > 1
            ? raw.permute(Enumerable.Range(0, stored.Length).Reverse().Select(i => (long)i).ToArray()).contiguous()
            : raw;
        result = header.Kind switch
        {
            'b' => Booleans(result, source),
            'u' when header.ItemSize == 2 => result.to(ScalarType.Int32).bitwise_and_(0xFFFF),
            'u' when header.ItemSize == 4 => result.to(ScalarType.Int64).bitwise_and_(0xFFFFFFFFL),
            'u' when header.ItemSize == 8 => NonNegative(result, source),
            _ => result,
        };
        return scope.MoveToOuter(result);
    }

    static Tensor Booleans(Tensor bytes, string source)
    {
        if (bytes.numel() > 0 && bytes.max().item<byte>() > 1) throw NpyHeader.Bad(source, "a boolean array holds bytes other than 0 and 1");
        return bytes.to(ScalarType.Bool);
    }

    static Tensor NonNegative(Tensor values, string source)
    {
        if (values.numel() > 0 && values.min().item<long>() < 0)
            throw NpyHeader.Bad(source, "a uint64 array holds values above 2^63 - 1, which no libtorch dtype can hold");
        return values;
    }

    /// <summary>Writes a tensor as .npy version 1.0, little endian, C order (the layout numpy.save writes).</summary>
    public static void Write(Stream stream, Tensor tensor)
    {
        string dtype = tensor.dtype switch
        {
            ScalarType.Bool => "|b1",
            ScalarType.Byte => "|u1",
            ScalarType.Int8 => "|i1",
            ScalarType.Int16 => "<i2",
            ScalarType.Int32 => "<i4",
            ScalarType.Int64 => "<i8",
            ScalarType.Float16 => "<f2",
            ScalarType.Float32 => "<f4",
            ScalarType.Float64 => "<f8",
            _ => throw new ArgumentException($"tensors of {tensor.dtype} have no .npy dtype here"),
        };
        string shape = tensor.dim() == 1 ? $"({tensor.shape[0]},)" : $"({string.Join(", ", tensor.shape)})";
        string dict = $"{{'descr': '{dtype}', 'fortran_order': False, 'shape': {shape}, }}";
        int total = 10 + dict.Length + 1;
        int padded = (total + 63) / 64 * 64;  // numpy aligns the data to 64 bytes
        string text = dict + new string(' ', padded - total) + "\n";
        Span<byte> prefix = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0, 0, 0];
        BinaryPrimitives.WriteUInt16LittleEndian(prefix[8..], (ushort)text.Length);
        stream.Write(prefix);
        stream.Write(Encoding.Latin1.GetBytes(text));
        using var contiguous = tensor.cpu().contiguous();
        contiguous.WriteBytesToStream(stream, 1 << 20);
    }

    static FileStream OpenRead(string path)
    {
        try
        {
            return new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path);
        }
    }
}
