using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// One element type of the safetensors format, by its spec string ("F32", "BF16", "F8_E4M3", ...). Those TorchSharp
/// 0.107 has a <see cref="ScalarType"/> for map to it; the rest (unsigned 16/32/64-bit, the 8-, 6- and 4-bit floats)
/// are read and written as raw bytes only.
/// </summary>
public sealed class SafetensorsDtype
{
    /// <summary>The spec's string, as written in the header.</summary>
    public string Name { get; }

    /// <summary>Bits per element: 4 and 6 for the sub-byte floats, so a tensor's size is counted in bits.</summary>
    public int BitSize { get; }

    /// <summary>TorchSharp's type for it, or null when it can only be handled as raw bytes.</summary>
    public ScalarType? ScalarType { get; }

    /// <summary>
    /// The position in the reference implementation's Dtype enum (increasing alignment); the writer lays tensors out
    /// by this, descending, so every tensor it writes starts aligned for its type.
    /// </summary>
    internal int Rank { get; }

    SafetensorsDtype(string name, int bitSize, ScalarType? scalarType, int rank)
    {
        Name = name;
        BitSize = bitSize;
        ScalarType = scalarType;
        Rank = rank;
    }

    public static readonly SafetensorsDtype BOOL = new("BOOL", 8, TorchSharp.torch.ScalarType.Bool, 0);
    public static readonly SafetensorsDtype F4 = new("F4", 4, null, 1);
    public static readonly SafetensorsDtype F6_E2M3 = new("F6_E2M3", 6, null, 2);
    public static readonly SafetensorsDtype F6_E3M2 = new("F6_E3M2", 6, null, 3);
    public static readonly SafetensorsDtype U8 = new("U8", 8, TorchSharp.torch.ScalarType.Byte, 4);
    public static readonly SafetensorsDtype I8 = new("I8", 8, TorchSharp.torch.ScalarType.Int8, 5);
    public static readonly SafetensorsDtype F8_E5M2 = new("F8_E5M2", 8, null, 6);
    public static readonly SafetensorsDtype F8_E4M3 = new("F8_E4M3", 8, null, 7);
    public static readonly SafetensorsDtype F8_E8M0 = new("F8_E8M0", 8, null, 8);
    public static readonly SafetensorsDtype F8_E4M3FNUZ = new("F8_E4M3FNUZ", 8, null, 9);
    public static readonly SafetensorsDtype F8_E5M2FNUZ = new("F8_E5M2FNUZ", 8, null, 10);
    public static readonly SafetensorsDtype I16 = new("I16", 16, TorchSharp.torch.ScalarType.Int16, 11);
    public static readonly SafetensorsDtype U16 = new("U16", 16, null, 12);
    public static readonly SafetensorsDtype F16 = new("F16", 16, TorchSharp.torch.ScalarType.Float16, 13);
    public static readonly SafetensorsDtype BF16 = new("BF16", 16, TorchSharp.torch.ScalarType.BFloat16, 14);
    public static readonly SafetensorsDtype I32 = new("I32", 32, TorchSharp.torch.ScalarType.Int32, 15);
    public static readonly SafetensorsDtype U32 = new("U32", 32, null, 16);
    public static readonly SafetensorsDtype F32 = new("F32", 32, TorchSharp.torch.ScalarType.Float32, 17);
    public static readonly SafetensorsDtype C64 = new("C64", 64, TorchSharp.torch.ScalarType.ComplexFloat32, 18);
    public static readonly SafetensorsDtype F64 = new("F64", 64, TorchSharp.torch.ScalarType.Float64, 19);
    public static readonly SafetensorsDtype I64 = new("I64", 64, TorchSharp.torch.ScalarType.Int64, 20);
    public static readonly SafetensorsDtype U64 = new("U64", 64, null, 21);

    /// <summary>Every dtype of the spec, in <see cref="Rank"/> order.</summary>
    public static IReadOnlyList<SafetensorsDtype> All { get; } =
    [
        BOOL, F4, F6_E2M3, F6_E3M2, U8, I8, F8_E5M2, F8_E4M3, F8_E8M0, F8_E4M3FNUZ, F8_E5M2FNUZ,
        I16, U16, F16, BF16, I32, U32, F32, C64, F64, I64, U64,
    ];

    static readonly Dictionary<string, SafetensorsDtype> ByName = All.ToDictionary(d => d.Name, StringComparer.Ordinal);

    /// <summary>The dtype for a header string (case-sensitive, as the spec spells it), or null.</summary>
    public static SafetensorsDtype? TryParse(string name) => ByName.GetValueOrDefault(name);

    /// <summary>The safetensors dtype a torch tensor of this type is stored as, or null when the format has none (complex128, quantized).</summary>
    public static SafetensorsDtype? FromScalarType(ScalarType type) => type switch
    {
        TorchSharp.torch.ScalarType.Bool => BOOL,
        TorchSharp.torch.ScalarType.Byte => U8,
        TorchSharp.torch.ScalarType.Int8 => I8,
        TorchSharp.torch.ScalarType.Int16 => I16,
        TorchSharp.torch.ScalarType.Int32 => I32,
        TorchSharp.torch.ScalarType.Int64 => I64,
        TorchSharp.torch.ScalarType.Float16 => F16,
        TorchSharp.torch.ScalarType.BFloat16 => BF16,
        TorchSharp.torch.ScalarType.Float32 => F32,
        TorchSharp.torch.ScalarType.Float64 => F64,
        TorchSharp.torch.ScalarType.ComplexFloat32 => C64,
        _ => null,
    };

    /// <summary>Whether TorchSharp can hold it as a tensor of its own type.</summary>
    public bool IsTorchType => ScalarType != null;

    /// <summary>Bytes per element for whole-byte types; the alignment a zero-copy view needs.</summary>
    internal int ByteSize => BitSize / 8;

    public override string ToString() => Name;
}
