namespace Medformer.Runtime;

/// <summary>
/// A tensor to write as raw little-endian bytes with an explicit dtype: the way to store the types TorchSharp has no
/// tensor type for (F8_E4M3, U16, F4, ...). <see cref="Data"/> must hold exactly the bytes the shape needs.
/// </summary>
public sealed record SafetensorsRawTensor(SafetensorsDtype Dtype, IReadOnlyList<long> Shape, ReadOnlyMemory<byte> Data);
