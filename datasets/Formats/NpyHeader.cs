using System.Buffers.Binary;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>
/// The header of a NumPy .npy file (format versions 1.0, 2.0 and 3.0): the dtype string (e.g. "&lt;f4"), the
/// memory order and the shape. See numpy.lib.format.
/// </summary>
public sealed record NpyHeader(string Dtype, bool FortranOrder, long[] Shape, int DataOffset)
{
    const int MaxHeaderLength = 1 << 20;
    static readonly byte[] Magic = [0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y'];

    public long Count => Shape.Aggregate(1L, (a, n) => checked(a * n));

    /// <summary>'&lt;' little, '&gt;' big, '|' not applicable (single bytes).</summary>
    public char ByteOrder => Dtype[0];
    public char Kind => Dtype[1];
    public int ItemSize => int.Parse(Dtype.AsSpan(2));
    public long DataLength => checked(Count * ItemSize);

    /// <summary>NumPy's name of the dtype: uint8 for "|u1", float32 for "&lt;f4", bool for "|b1".</summary>
    public string NumpyName => Kind switch
    {
        'b' => "bool",
        'u' => $"uint{8 * ItemSize}",
        'i' => $"int{8 * ItemSize}",
        'f' => $"float{8 * ItemSize}",
        'c' => $"complex{8 * ItemSize}",
        _ => Dtype,
    };

    /// <summary>Reads and validates the header from the start of <paramref name="stream"/>; <paramref name="source"/> names it in errors.</summary>
    public static NpyHeader Read(Stream stream, string source)
    {
        Span<byte> prefix = stackalloc byte[12];
        ReadExactly(stream, prefix[..8], source, "the magic string and version");
        if (!prefix[..6].SequenceEqual(Magic)) throw Bad(source, "not a .npy file (no \\x93NUMPY magic)");
        byte major = prefix[6];
        int length, offset;
        switch (major)
        {
            case 1:
                ReadExactly(stream, prefix.Slice(8, 2), source, "the header length");
                length = BinaryPrimitives.ReadUInt16LittleEndian(prefix.Slice(8, 2));
                offset = 10;
                break;
            case 2 or 3:
                ReadExactly(stream, prefix.Slice(8, 4), source, "the header length");
                uint wide = BinaryPrimitives.ReadUInt32LittleEndian(prefix.Slice(8, 4));
                if (wide > MaxHeaderLength) throw Bad(source, $"header length {wide} is beyond the {MaxHeaderLength}-byte limit");
                length = (int)wide;
                offset = 12;
                break;
            default:
                throw Bad(source, $"format version {major}.{prefix[7]} is not supported (1.0, 2.0 and 3.0 are)");
        }
        var header = new byte[length];
        ReadExactly(stream, header, source, "the header");
        string text = (major == 3 ? Encoding.UTF8 : Encoding.Latin1).GetString(header);
        return Parse(text, offset + length, source);
    }

    static NpyHeader Parse(string text, int dataOffset, string source)
    {
        var dict = PythonLiteral.ParseDict(text.TrimEnd(' ', '\n', '\0'), source);
        if (dict.Count != 3 || !dict.ContainsKey("descr") || !dict.ContainsKey("fortran_order") || !dict.ContainsKey("shape"))
            throw Bad(source, $"header must hold exactly 'descr', 'fortran_order' and 'shape', not {string.Join(", ", dict.Keys.Select(k => $"'{k}'"))}");
        if (dict["descr"] is not string dtype)
            throw Bad(source, "'descr' is not a dtype string (structured arrays are not supported)");
        if (dict["fortran_order"] is not bool fortran) throw Bad(source, "'fortran_order' is not True or False");
        if (dict["shape"] is not List<object> dims || dims.Any(d => d is not long))
            throw Bad(source, "'shape' is not a tuple of integers");
        long[] shape = dims.Cast<long>().ToArray();
        if (shape.Any(n => n < 0)) throw Bad(source, $"shape ({string.Join(", ", shape)}) has a negative extent");
        ValidateDtype(dtype, source);
        var result = new NpyHeader(dtype, fortran, shape, dataOffset);
        try
        {
            _ = result.DataLength;
        }
        catch (OverflowException)
        {
            throw Bad(source, $"shape ({string.Join(", ", shape)}) of {dtype} overflows 64-bit sizes");
        }
        return result;
    }

    static void ValidateDtype(string dtype, string source)
    {
        bool ok = dtype.Length >= 3 && dtype[0] is '<' or '>' or '|' or '=' && dtype[1] is 'b' or 'i' or 'u' or 'f'
            && int.TryParse(dtype.AsSpan(2), out int size)
            && (dtype[1], size) is ('b', 1) or ('i' or 'u', 1 or 2 or 4 or 8) or ('f', 2 or 4 or 8);
        if (!ok) throw Bad(source, $"dtype '{dtype}' is not supported (booleans, integers and floats are)");
        if (dtype[0] == '=') throw Bad(source, "dtype with native byte order '=' is ambiguous in a file");
    }

    static void ReadExactly(Stream stream, Span<byte> buffer, string source, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw Bad(source, $"truncated: the file ends inside {what}");
        }
    }

    internal static InvalidDataException Bad(string source, string fault) => new($"{source}: {fault}");
}
