namespace Medformer.Runtime;

/// <summary>
/// One tensor's entry in a safetensors header: its dtype, shape, and byte range [Begin, End) within the data buffer
/// that follows the header (not from the start of the file).
/// </summary>
public sealed record SafetensorsTensorInfo(string Name, SafetensorsDtype Dtype, IReadOnlyList<long> Shape, long Begin, long End)
{
    public long ByteLength => End - Begin;

    /// <summary>The product of the shape: 1 for a 0-d scalar, 0 when any dimension is 0.</summary>
    public long ElementCount
    {
        get
        {
            long count = 1;
            foreach (long dim in Shape) count *= dim;
            return count;
        }
    }

    /// <summary>The shape the way the header writes it, e.g. "F32 [2, 3]".</summary>
    internal string Describe() => $"{Dtype.Name} [{string.Join(", ", Shape)}]";
}
