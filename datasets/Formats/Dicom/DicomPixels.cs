using System.Buffers.Binary;
using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Native (uncompressed) pixel data to a tensor, as pydicom's pixel_array gives it: 1, 8, 16 or 32 bits allocated,
/// signed or unsigned, masked to BitsStored (and sign-extended when signed), frames first, colour planes first.
/// libtorch has no uint16 or uint32, so those widen to int32 and int64 unless BitsStored leaves the sign bit free.
/// </summary>
static class DicomPixels
{
    const int Chunk = 1 << 24;

    /// <summary>Refuses what this reader cannot decode (NotSupportedException) and pixel data too short for its image (InvalidDataException).</summary>
    public static long CheckDecodable(DicomImageInfo info, DicomElement pixelData, string path)
    {
        var syntax = info.TransferSyntax;
        if (syntax.Encapsulated)
            throw new NotSupportedException($"{path}: the pixel data is compressed with {syntax}; only native (uncompressed) pixel data can be read. "
                + "Decompress the file first, e.g. with gdcmconv --raw or dcmdjpeg/dcmdjp2k");
        if (pixelData.IsUndefinedLength)
            throw Dicom.Bad(path, $"Pixel Data (7FE0,0010) is encapsulated (undefined length) but the transfer syntax {syntax} is not a compressed one");
        if (info.BitsAllocated is not (1 or 8 or 16 or 32))
            throw new NotSupportedException($"{path}: Bits Allocated {info.BitsAllocated} is not supported (1, 8, 16 and 32 are)");
        if (info.HighBit != info.BitsStored - 1)
            throw new NotSupportedException($"{path}: High Bit {info.HighBit} with Bits Stored {info.BitsStored}: samples " +
                "not in the low bits are not supported");
        string photometric = info.PhotometricInterpretation;
        bool supported = info.SamplesPerPixel switch
        {
            1 => photometric is "MONOCHROME1" or "MONOCHROME2" or "PALETTE COLOR",
            3 => photometric is "RGB" or "YBR_FULL" && info.BitsAllocated != 1,
            _ => false,
        };
        if (!supported)
            throw new NotSupportedException($"{path}: Photometric Interpretation {photometric} with {info.SamplesPerPixel} samples per pixel and " +
                $"{info.BitsAllocated} bits allocated is not supported "
                + "(MONOCHROME1, MONOCHROME2 and PALETTE COLOR indices with 1 sample; RGB and YBR_FULL with 3)");
        UInt128 samples = (UInt128)(ulong)info.Rows * (ulong)info.Columns * (ulong)info.SamplesPerPixel * (ulong)info.NumberOfFrames;
        UInt128 needed = info.BitsAllocated == 1 ? (samples + 7) / 8 : samples * (ulong)(info.BitsAllocated / 8);
        if (needed > (ulong)pixelData.Length)
            throw Dicom.Bad(path,
                $"Pixel Data holds {pixelData.Length} bytes but {info.Rows} rows × {info.Columns} columns × {info.NumberOfFrames} " +
                    $"frame{(info.NumberOfFrames == 1 ? "" : "s")}"
                + $" × {info.SamplesPerPixel} sample{(info.SamplesPerPixel == 1 ? "" : "s")} × {info.BitsAllocated} " +
                    $"bit{(info.BitsAllocated == 1 ? "" : "s")} need {needed}");
        if (info.BitsAllocated == 1 && samples > int.MaxValue)
            throw new NotSupportedException($"{path}: {samples} one-bit samples; at most {int.MaxValue} are supported");
        return (long)samples;
    }

    /// <summary>The stored values: [H,W], [F,H,W], [3,H,W] or [3,F,H,W].</summary>
    public static Tensor Decode(DicomImageInfo info, DicomElement pixelData, DicomSource source, string path)
    {
        long count = CheckDecodable(info, pixelData, path);
        using var scope = NewDisposeScope();
        Tensor flat = info.BitsAllocated == 1 ? Unpack(source, pixelData.Offset, count) : Read(info, source, pixelData.Offset, count, pixelData.BigEndian);
        long frames = info.NumberOfFrames, rows = info.Rows, columns = info.Columns;
        Tensor image;
        if (info.SamplesPerPixel == 1)
            image = frames == 1 ? flat.view(rows, columns) : flat.view(frames, rows, columns);
        else
        {
            image = info.PlanarConfiguration == 0
                ? flat.view(frames, rows, columns, 3).permute(3, 0, 1, 2)
                : flat.view(frames, 3, rows, columns).permute(1, 0, 2, 3);
            image = frames == 1 ? image.squeeze(1).contiguous() : image.contiguous();
        }
        return scope.MoveToOuter(image);
    }

    /// <summary>float32 values × slope + intercept when the rescale is not the identity; else the stored values.</summary>
    public static Tensor Rescale(Tensor stored, DicomImageInfo info)
    {
        if (!info.IsRescaled) return stored.alias();
        using var wide = stored.to(ScalarType.Float64);
        wide.mul_(info.RescaleSlope ?? 1).add_(info.RescaleIntercept ?? 0);
        return wide.to(ScalarType.Float32);
    }

    /// <summary>The dtype <see cref="Decode"/> gives for <paramref name="info"/>.</summary>
    public static ScalarType StoredDtype(DicomImageInfo info) => (info.BitsAllocated, info.IsSigned, info.BitsStored < info.BitsAllocated) switch
    {
        (1, _, _) => ScalarType.Byte,
        (8, false, _) => ScalarType.Byte,
        (8, true, _) => ScalarType.Int8,
        (16, true, _) or (16, false, true) => ScalarType.Int16,
        (16, false, false) => ScalarType.Int32,
        (32, true, _) or (32, false, true) => ScalarType.Int32,
        _ => ScalarType.Int64,
    };

    static Tensor Read(DicomImageInfo info, DicomSource source, long offset, long count, bool bigEndian)
    {
        int size = info.BitsAllocated / 8;
        var storage = size switch { 1 => info.IsSigned ? ScalarType.Int8 : ScalarType.Byte, 2 => ScalarType.Int16, _ => ScalarType.Int32 };
        var raw = empty(count, dtype: storage);
        long perChunk = Chunk / size;
        for (long start = 0; start < count; start += perChunk)
        {
            using var part = raw.narrow(0, start, Math.Min(perChunk, count - start));
            Span<byte> bytes = part.bytes;
            source.Read(offset + start * size, bytes);
            // pydicom reads big endian samples of 16 and 32 bits as such, and 8-bit ones as bytes.
            if (bigEndian && size == 2) BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, short>(bytes), MemoryMarshal.Cast<byte, short>(bytes));
            if (bigEndian && size == 4) BinaryPrimitives.ReverseEndianness(MemoryMarshal.Cast<byte, int>(bytes), MemoryMarshal.Cast<byte, int>(bytes));
            if (info.BitsStored < info.BitsAllocated) KeepStoredBits(bytes, size, info.BitsStored, info.IsSigned);
        }
        return (size, info.IsSigned, info.BitsStored == info.BitsAllocated) switch
        {
            (2, false, true) => raw.to(ScalarType.Int32).bitwise_and_(0xFFFF),
            (4, false, true) => raw.to(ScalarType.Int64).bitwise_and_(0xFFFFFFFFL),
            _ => raw,
        };
    }

    // Bits above BitsStored may hold overlays or garbage: mask them off, or copy the sign bit into them.
    static void KeepStoredBits(Span<byte> bytes, int size, int bitsStored, bool signed)
    {
        int shift = 8 * size - bitsStored;
        switch (size)
        {
            case 1:
                var b = MemoryMarshal.Cast<byte, sbyte>(bytes);
                for (int i = 0; i < b.Length; i++) b[i] = signed ? (sbyte)((sbyte)(b[i] << shift) >> shift) : (sbyte)(byte)((byte)b[i] & (0xFF >> shift));
                break;
            case 2:
                var s = MemoryMarshal.Cast<byte, short>(bytes);
                for (int i = 0; i < s.Length; i++) s[i] = signed ? (short)((short)(s[i] << shift) >> shift) : (short)((ushort)s[i] & (0xFFFF >> shift));
                break;
            default:
                var w = MemoryMarshal.Cast<byte, int>(bytes);
                for (int i = 0; i < w.Length; i++) w[i] = signed ? (w[i] << shift) >> shift : (int)((uint)w[i] & (0xFFFFFFFFu >> shift));
                break;
        }
    }

    // 1-bit data (segmentations): eight pixels a byte, the first in the lowest bit, frames packed without padding.
    static Tensor Unpack(DicomSource source, long offset, long count)
    {
        var packed = new byte[(count + 7) / 8];
        source.Read(offset, packed);
        var pixels = empty(count, dtype: ScalarType.Byte);
        var span = pixels.bytes;
        for (int i = 0; i < span.Length; i++) span[i] = (byte)((packed[i >> 3] >> (i & 7)) & 1);
        return pixels;
    }
}
