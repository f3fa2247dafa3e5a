using System.Buffers.Binary;
using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>Raw array bytes from a stream straight into a tensor's memory: what the npy and NIfTI readers share.</summary>
static class RawData
{
    const int Chunk = 1 << 24;

    /// <summary>
    /// Fills <paramref name="target"/> (contiguous, CPU) from <paramref name="stream"/>, a chunk at a time (spans stop
    /// at 2 GB), swapping each <paramref name="itemSize"/>-byte item when <paramref name="swap"/>; a stream that ends
    /// early raises <paramref name="truncated"/>'s exception.
    /// </summary>
    public static void Fill(Stream stream, Tensor target, bool swap, int itemSize, Func<Exception> truncated)
    {
        if (target.numel() == 0) return;
        using var flat = target.view(-1);
        long perChunk = Chunk / itemSize, count = flat.shape[0];
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = flat.narrow(0, start, Math.Min(perChunk, count - start));
            Span<byte> bytes = part.bytes;
            try
            {
                stream.ReadExactly(bytes);
            }
            catch (EndOfStreamException)
            {
                throw truncated();
            }
            if (swap) Swap(bytes, itemSize);
        }
    }

    public static void Swap(Span<byte> bytes, int itemSize)
    {
        switch (itemSize)
        {
            case 2: BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, ushort>(bytes), MemoryMarshal.Cast<byte, ushort>(bytes)); break;
            case 4: BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, uint>(bytes), MemoryMarshal.Cast<byte, uint>(bytes)); break;
            case 8: BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, ulong>(bytes), MemoryMarshal.Cast<byte, ulong>(bytes)); break;
        }
    }
}
