using System.Buffers;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>Lays tensors out and writes the file atomically; <see cref="Safetensors"/> holds the public entry points.</summary>
internal static class SafetensorsWriter
{
    static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>Bytes handed to the stream per TorchSharp call; big tensors go out in pieces of this size.</summary>
    const long ChunkBytes = 16 << 20;

    /// <summary>One tensor to write: either a torch tensor or raw bytes.</summary>
    sealed record Entry(string Name, byte[] NameUtf8, SafetensorsDtype Dtype, long[] Shape, long ByteLength, Tensor? Tensor, ReadOnlyMemory<byte> Raw);

    public static void Write(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, SafetensorsRawTensor> raw, string path,
        IReadOnlyDictionary<string, string>? metadata)
    {
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this machine is not.");
        var entries = new List<Entry>(tensors.Count + raw.Count);
        foreach (var (name, tensor) in tensors) entries.Add(FromTensor(name, tensor, path));
        foreach (var (name, tensor) in raw)
        {
            if (tensors.ContainsKey(name)) throw new SafetensorsException(path,
                $"tensor {SafetensorsHeader.Quote(name)} is given both as a torch tensor and as raw bytes");
            entries.Add(FromRaw(name, tensor, path));
        }
        // The reference implementation's order: descending dtype (so descending alignment), then name.
        entries.Sort((a, b) => a.Dtype.Rank != b.Dtype.Rank ? b.Dtype.Rank.CompareTo(a.Dtype.Rank) : a.NameUtf8.AsSpan().SequenceCompareTo(b.NameUtf8));

        byte[] header = Header(entries, metadata, path);
        WriteAtomically(path, header, entries);
    }

    static Entry FromTensor(string name, Tensor tensor, string path)
    {
        CheckName(name, path);
        if (tensor is null) throw new SafetensorsException(path, $"tensor {SafetensorsHeader.Quote(name)} is null");
        var dtype = SafetensorsDtype.FromScalarType(tensor.dtype)
            ?? throw new SafetensorsException(path, $"tensor {SafetensorsHeader.Quote(name)} is {tensor.dtype}, which safetensors has no dtype for");
        if (tensor.is_sparse) throw new SafetensorsException(path, $"tensor {SafetensorsHeader.Quote(name)} is sparse; save a dense tensor (to_dense)");
        long[] shape = tensor.shape;
        return new Entry(name, Utf8(name, path), dtype, shape, checked(tensor.numel() * dtype.ByteSize), tensor, default);
    }

    static Entry FromRaw(string name, SafetensorsRawTensor tensor, string path)
    {
        CheckName(name, path);
        string who = $"tensor {SafetensorsHeader.Quote(name)}";
        if (tensor is null || tensor.Dtype is null || tensor.Shape is null) throw new SafetensorsException(path, $"{who} has no dtype or shape");
        long[] shape = [.. tensor.Shape];
        long elements = 1;
        foreach (long dim in shape)
        {
            if (dim < 0) throw new SafetensorsException(path, $"{who}: shape {SafetensorsHeader.ShapeText(shape)} has a negative dimension");
            elements = checked(elements * dim);
        }
        long bits = checked(elements * tensor.Dtype.BitSize);
        if (bits % 8 != 0) throw new SafetensorsException(path,
            $"{who}: {tensor.Dtype.Name} {SafetensorsHeader.ShapeText(shape)} is {bits} bits, not a whole number of bytes");
        if (tensor.Data.Length != bits / 8)
            throw new SafetensorsException(path,
                $"{who}: {tensor.Data.Length} bytes given but {tensor.Dtype.Name} {SafetensorsHeader.ShapeText(shape)} needs {bits / 8}");
        return new Entry(name, Utf8(name, path), tensor.Dtype, shape, bits / 8, null, tensor.Data);
    }

    static void CheckName(string name, string path)
    {
        if (name == SafetensorsHeader.MetadataKey) throw new SafetensorsException(path,
            $"'{SafetensorsHeader.MetadataKey}' is reserved for metadata and cannot name a tensor");
    }

    static byte[] Utf8(string text, string path)
    {
        try
        {
            return StrictUtf8.GetBytes(text);
        }
        catch (EncoderFallbackException e)
        {
            throw new SafetensorsException(path, $"{SafetensorsHeader.Quote(text)} is not valid Unicode (a lone surrogate); the header is UTF-8", e);
        }
    }

    /// <summary>The header as serde_json writes it (compact; UTF-8 kept; only quote, backslash and controls escaped), space-padded to a multiple of
    /// 8.</summary>
    static byte[] Header(List<Entry> entries, IReadOnlyDictionary<string, string>? metadata, string path)
    {
        var json = new ArrayBufferWriter<byte>();
        Ascii(json, "{");
        bool first = true;
        if (metadata != null)
        {
            JsonString(json, Utf8(SafetensorsHeader.MetadataKey, path));
            Ascii(json, ":{");
            var pairs = metadata.Select(pair => (Key: Utf8(pair.Key, path), Value: pair.Value is null
                    ? throw new SafetensorsException(path, $"metadata value for {SafetensorsHeader.Quote(pair.Key)} is null")
                    : Utf8(pair.Value, path)))
                .OrderBy(pair => pair.Key, ByteOrder.Instance);
            bool firstPair = true;
            foreach (var (key, value) in pairs)
            {
                if (!firstPair) Ascii(json, ",");
                firstPair = false;
                JsonString(json, key);
                Ascii(json, ":");
                JsonString(json, value);
            }
            Ascii(json, "}");
            first = false;
        }
        long offset = 0;
        foreach (var entry in entries)
        {
            if (!first) Ascii(json, ",");
            first = false;
            JsonString(json, entry.NameUtf8);
            Ascii(json, $":{{\"dtype\":\"{entry.Dtype.Name}\",\"shape\":[{string.Join(",", entry.Shape)}],");
            Ascii(json, $"\"data_offsets\":[{offset},{offset + entry.ByteLength}]}}");
            offset += entry.ByteLength;
        }
        Ascii(json, "}");
        int padded = (json.WrittenCount + 7) / 8 * 8;
        if (padded > SafetensorsHeader.MaxLength)
            throw new SafetensorsException(path, $"header would be {padded} bytes, over the limit of {SafetensorsHeader.MaxLength}");
        var header = new byte[padded];
        json.WrittenSpan.CopyTo(header);
        header.AsSpan(json.WrittenCount).Fill((byte)' ');
        return header;
    }

    static void Ascii(ArrayBufferWriter<byte> json, string text) => json.Write(Encoding.ASCII.GetBytes(text));

    static void JsonString(ArrayBufferWriter<byte> json, byte[] utf8)
    {
        json.Write("\""u8);
        foreach (byte b in utf8)
        {
            // Bytes of multi-byte UTF-8 sequences are all >= 0x80, so escaping byte by byte is exact.
            switch (b)
            {
                case (byte)'"': json.Write("\\\""u8); break;
                case (byte)'\\': json.Write("\\\\"u8); break;
                case (byte)'\b': json.Write("\\b"u8); break;
                case (byte)'\f': json.Write("\\f"u8); break;
                case (byte)'\n': json.Write("\\n"u8); break;
                case (byte)'\r': json.Write("\\r"u8); break;
                case (byte)'\t': json.Write("\\t"u8); break;
                case < 0x20: Ascii(json, $"\\u{b:x4}"); break;
                default: json.Write([b]); break;
            }
        }
        json.Write("\""u8);
    }

    static void WriteAtomically(string path, byte[] header, List<Entry> entries)
    {
        string full = Path.GetFullPath(path);
        string temp = $"{full}.tmp-{Guid.NewGuid():N}";
        try
        {
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 1 << 20))
            {
                Span<byte> length = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(length, (ulong)header.Length);
                stream.Write(length);
                stream.Write(header);
                foreach (var entry in entries)
                {
                    if (entry.Tensor is null) stream.Write(entry.Raw.Span);
                    else WriteTensor(stream, entry.Tensor);
                }
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
            SyncDirectory(Path.GetDirectoryName(full)!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temp);
            throw new SafetensorsException(path, $"cannot write: {e.Message}", e);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
    }

    /// <summary>The tensor's elements in row-major order, little-endian, from a contiguous CPU copy when it is not one already.</summary>
    static void WriteTensor(Stream stream, Tensor tensor)
    {
        if (tensor.numel() == 0) return;
        using var scope = torch.NewDisposeScope();
        Tensor flat = tensor.detach().cpu().resolve_conj().resolve_neg().contiguous().reshape(-1);
        long elements = flat.numel();
        long step = Math.Max(1, ChunkBytes / flat.element_size());
        for (long start = 0; start < elements; start += step)
        {
            using var piece = flat.narrow(0, start, Math.Min(step, elements - start));
            stream.Write(piece.bytes);
        }
    }

    static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }

    /// <summary>The rename is durable only once the directory is flushed too; not every file system allows it, so failures are ignored.</summary>
    static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS()) return;
        int fd = open(directory, 0);
        if (fd < 0) return;
        fsync(fd);
        close(fd);
    }

    [DllImport("libc", SetLastError = true)]
    static extern int open([MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags);

    [DllImport("libc", SetLastError = true)]
    static extern int fsync(int fd);

    [DllImport("libc")]
    static extern int close(int fd);

    /// <summary>Orders UTF-8 byte strings as Rust orders strings: byte by byte.</summary>
    sealed class ByteOrder : IComparer<byte[]>
    {
        public static readonly ByteOrder Instance = new();
        public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
    }
}
