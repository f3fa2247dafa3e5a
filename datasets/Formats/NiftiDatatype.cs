using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// A NIfTI datatype code (nifti1.h's NIFTI_TYPE_*, Analyze 7.5's DT_* for the codes below 256): its name as nibabel
/// spells it, its bits per voxel, and how a reader stores it in a tensor.
/// </summary>
/// <param name="Code">The header's datatype field.</param>
/// <param name="Name">nibabel's name for it ("int16", "rgb24", ...).</param>
/// <param name="Bitpix">Bits per voxel, which the header's bitpix field must repeat.</param>
/// <param name="Storage">The libtorch dtype the stored values are read into, before unsigned types widen; null where
/// no libtorch dtype holds them (binary, complex, float128), which the reader refuses.</param>
/// <param name="Channels">Values per voxel: 3 for RGB24, 4 for RGBA32, else 1.</param>
public sealed record NiftiDatatype(int Code, string Name, int Bitpix, ScalarType? Storage, int Channels = 1)
{
    public static readonly NiftiDatatype Binary = new(1, "binary", 1, null);
    public static readonly NiftiDatatype UInt8 = new(2, "uint8", 8, ScalarType.Byte);
    public static readonly NiftiDatatype Int16 = new(4, "int16", 16, ScalarType.Int16);
    public static readonly NiftiDatatype Int32 = new(8, "int32", 32, ScalarType.Int32);
    public static readonly NiftiDatatype Float32 = new(16, "float32", 32, ScalarType.Float32);
    public static readonly NiftiDatatype Complex64 = new(32, "complex64", 64, null);
    public static readonly NiftiDatatype Float64 = new(64, "float64", 64, ScalarType.Float64);
    public static readonly NiftiDatatype Rgb24 = new(128, "rgb24", 24, ScalarType.Byte, 3);
    public static readonly NiftiDatatype Int8 = new(256, "int8", 8, ScalarType.Int8);
    public static readonly NiftiDatatype UInt16 = new(512, "uint16", 16, ScalarType.Int16);
    public static readonly NiftiDatatype UInt32 = new(768, "uint32", 32, ScalarType.Int32);
    public static readonly NiftiDatatype Int64 = new(1024, "int64", 64, ScalarType.Int64);
    public static readonly NiftiDatatype UInt64 = new(1280, "uint64", 64, ScalarType.Int64);
    public static readonly NiftiDatatype Float128 = new(1536, "float128", 128, null);
    public static readonly NiftiDatatype Complex128 = new(1792, "complex128", 128, null);
    public static readonly NiftiDatatype Complex256 = new(2048, "complex256", 256, null);
    public static readonly NiftiDatatype Rgba32 = new(2304, "rgba32", 32, ScalarType.Byte, 4);

    public static IReadOnlyList<NiftiDatatype> All { get; } =
    [
        Binary, UInt8, Int16, Int32, Float32, Complex64, Float64, Rgb24, Int8, UInt16, UInt32, Int64, UInt64,
        Float128, Complex128, Complex256, Rgba32,
    ];

    /// <summary>The datatype with this code, or null for a code NIfTI does not define (0 "unknown" included).</summary>
    public static NiftiDatatype? FromCode(int code) => All.FirstOrDefault(t => t.Code == code);

    public bool IsSupported => Storage is not null;

    public bool IsUnsigned => Code is 512 or 768 or 1280;

    /// <summary>Bytes of one stored value (one channel): the unit of byte swapping.</summary>
    public int ItemSize => Bitpix / 8 / Channels;

    /// <summary>Bytes per voxel; binary (1 bit) counts as 0 here, being refused anyway.</summary>
    public int BytesPerVoxel => Bitpix / 8;

    public override string ToString() => $"{Name} ({Code})";
}
