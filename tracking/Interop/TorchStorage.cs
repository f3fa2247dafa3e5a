using static TorchSharp.torch;

namespace Medformer.Tracking.Interop;

/// <summary>A storage a torch pickle refers to by persistent id: its key in the file, element type and length.</summary>
public sealed record TorchStorage(string Key, string TypeName, ScalarType Dtype, string Location, long Numel)
{
    /// <summary>The torch.*Storage class names torch.save writes, and the element types they hold.</summary>
    public static bool TryParse(string typeName, out ScalarType dtype)
    {
        ScalarType? type = typeName switch
        {
            "FloatStorage" => ScalarType.Float32,
            "DoubleStorage" => ScalarType.Float64,
            "HalfStorage" => ScalarType.Float16,
            "BFloat16Storage" => ScalarType.BFloat16,
            "LongStorage" => ScalarType.Int64,
            "IntStorage" => ScalarType.Int32,
            "ShortStorage" => ScalarType.Int16,
            "CharStorage" => ScalarType.Int8,
            "ByteStorage" => ScalarType.Byte,
            "BoolStorage" => ScalarType.Bool,
            "ComplexFloatStorage" => ScalarType.ComplexFloat32,
            "ComplexDoubleStorage" => ScalarType.ComplexFloat64,
            _ => null,
        };
        dtype = type ?? default;
        return type != null;
    }

    public static int ElementSize(ScalarType dtype) => dtype switch
    {
        ScalarType.Bool or ScalarType.Byte or ScalarType.Int8 => 1,
        ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Int16 => 2,
        ScalarType.Float32 or ScalarType.Int32 => 4,
        ScalarType.ComplexFloat64 => 16,
        _ => 8,
    };

    public long ByteLength => Numel * ElementSize(Dtype);
}

/// <summary>A tensor as the pickle describes it (torch._utils._rebuild_tensor_v2): a strided view of a storage.</summary>
public sealed record TorchTensorRef(TorchStorage Storage, long Offset, long[] Size, long[] Stride)
{
    public ScalarType Dtype => Storage.Dtype;
}
