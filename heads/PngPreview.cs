using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// A grey 8-bit PNG preview of an image: a 2D image [H,W], or the middle slice along the slowest axis of a volume
/// [D,H,W], its values mapped linearly from [min, max] to [0, 255]. Written atomically (temporary file, renamed).
/// </summary>
public static class PngPreview
{
    static readonly uint[] CrcTable = [.. Enumerable.Range(0, 256).Select(n =>
    {
        uint c = (uint)n;
        for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        return c;
    })];

    public static void Write(string path, Tensor image)
    {
        if (image.dim() is not (2 or 3))
            throw new ArgumentException($"a PNG preview takes an image [H,W] or a volume [D,H,W], not [{string.Join(",", image.shape)}]");
        byte[] pixels;
        int height, width;
        using (var scope = NewDisposeScope())
        {
            var plane = (image.dim() == 3 ? image.select(0, image.shape[0] / 2) : image).to(ScalarType.Float32).cpu();
            var (low, high) = (plane.min().item<float>(), plane.max().item<float>());
            var scaled = high > low ? (plane - low) * (255.0 / (high - low)) : zeros_like(plane);
            pixels = scaled.round().clamp(0, 255).to(ScalarType.Byte).contiguous().data<byte>().ToArray();
            (height, width) = ((int)plane.shape[0], (int)plane.shape[1]);
        }
        var raw = new MemoryStream();
        using (var zlib = new ZLibStream(raw, CompressionLevel.Optimal, leaveOpen: true))
            for (int row = 0; row < height; row++)
            {
                zlib.WriteByte(0);  // filter: none
                zlib.Write(pixels, row * width, width);
            }
        var header = new byte[13];
        BinaryPrimitives.WriteInt32BigEndian(header, width);
        BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), height);
        header[8] = 8;  // bit depth; colour type 0 (grey), deflate, adaptive filtering, no interlace
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var file = File.Create(temp))
            {
                file.Write([0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A]);
                Chunk(file, "IHDR", header);
                Chunk(file, "IDAT", raw.ToArray());
                Chunk(file, "IEND", []);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    static void Chunk(Stream stream, string type, byte[] data)
    {
        var head = new byte[8];
        BinaryPrimitives.WriteInt32BigEndian(head, data.Length);
        Encoding.ASCII.GetBytes(type, head.AsSpan(4));
        stream.Write(head);
        stream.Write(data);
        uint crc = 0xFFFFFFFFu;
        foreach (byte b in head.AsSpan(4).ToArray().Concat(data)) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        var tail = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(tail, crc ^ 0xFFFFFFFFu);
        stream.Write(tail);
    }
}
