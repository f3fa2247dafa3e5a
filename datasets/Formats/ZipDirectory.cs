using System.Buffers.Binary;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>One member of a zip archive: how it is stored and where its bytes start in the file.</summary>
/// <param name="Method">0 stored, 8 deflated (the two numpy writes).</param>
/// <param name="DataOffset">The file offset of the member's first byte (after its local header).</param>
public sealed record ZipMember(string Name, int Method, long CompressedSize, long Size, long DataOffset)
{
    public bool IsStored => Method == 0;
}

/// <summary>
/// The central directory of a zip file (Zip64 included, as numpy.savez writes it), read only to learn where a stored
/// member's bytes lie, so they can be memory-mapped; System.IO.Compression keeps that to itself. Every offset and
/// size is checked against the file's length.
/// </summary>
public static class ZipDirectory
{
    const uint EndSignature = 0x06054b50, Zip64EndSignature = 0x06064b50, Zip64LocatorSignature = 0x07064b50;
    const uint CentralSignature = 0x02014b50, LocalSignature = 0x04034b50;
    const int EndLength = 22, MaxComment = 0xFFFF;

    public static IReadOnlyList<ZipMember> Read(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12);
        return Read(file, path);
    }

    public static IReadOnlyList<ZipMember> Read(FileStream file, string path)
    {
        long length = file.Length;
        var (count, directoryOffset, directorySize) = FindDirectory(file, length, path);
        if (directoryOffset < 0 || directorySize < 0 || directoryOffset + directorySize > length)
            throw Bad(path, $"the central directory ({directorySize} bytes at {directoryOffset}) lies outside the file ({length} bytes)");
        if (directorySize > 1 << 28) throw Bad(path, $"a central directory of {directorySize} bytes is beyond this reader's limit");
        var directory = ReadAt(file, directoryOffset, (int)directorySize, path, "the central directory");
        var members = new List<ZipMember>();
        int at = 0;
        for (long i = 0; i < count; i++)
        {
            if (at + 46 > directory.Length || BinaryPrimitives.ReadUInt32LittleEndian(directory.AsSpan(at)) != CentralSignature)
                throw Bad(path, $"central directory entry {i} is malformed");
            var entry = directory.AsSpan(at);
            int method = BinaryPrimitives.ReadUInt16LittleEndian(entry[10..]);
            long compressed = BinaryPrimitives.ReadUInt32LittleEndian(entry[20..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(entry[24..]);
            int nameLength = BinaryPrimitives.ReadUInt16LittleEndian(entry[28..]);
            int extraLength = BinaryPrimitives.ReadUInt16LittleEndian(entry[30..]);
            int commentLength = BinaryPrimitives.ReadUInt16LittleEndian(entry[32..]);
            long localOffset = BinaryPrimitives.ReadUInt32LittleEndian(entry[42..]);
            int total = 46 + nameLength + extraLength + commentLength;
            if (at + total > directory.Length) throw Bad(path, $"central directory entry {i} runs past the directory");
            string name = Encoding.UTF8.GetString(entry.Slice(46, nameLength));
            ApplyZip64(entry.Slice(46 + nameLength, extraLength), ref size, ref compressed, ref localOffset, path, name);
            members.Add(new ZipMember(name, method, compressed, size, DataOffset(file, length, localOffset, compressed, path, name)));
            at += total;
        }
        return members;
    }

    // The end record lies in the last 22 + 65535 bytes; with Zip64, a locator before it points at the Zip64 end record.
    static (long Count, long Offset, long Size) FindDirectory(FileStream file, long length, string path)
    {
        if (length < EndLength) throw Bad(path, $"too short for a zip file ({length} bytes)");
        int tail = (int)Math.Min(length, EndLength + MaxComment + 20);
        var bytes = ReadAt(file, length - tail, tail, path, "the end of central directory");
        for (int at = tail - EndLength; at >= 0; at--)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at)) != EndSignature) continue;
            var end = bytes.AsSpan(at);
            long count = BinaryPrimitives.ReadUInt16LittleEndian(end[10..]);
            long size = BinaryPrimitives.ReadUInt32LittleEndian(end[12..]);
            long offset = BinaryPrimitives.ReadUInt32LittleEndian(end[16..]);
            if (count != 0xFFFF && size != 0xFFFFFFFF && offset != 0xFFFFFFFF) return (count, offset, size);
            if (at < 20 || BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan(at - 20)) != Zip64LocatorSignature)
                throw Bad(path, "the end record asks for Zip64 but no Zip64 locator precedes it");
            long recordOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(at - 12));
            if (recordOffset < 0 || recordOffset + 56 > length) throw Bad(path, $"the Zip64 end record offset {recordOffset} lies outside the file");
            var record = ReadAt(file, recordOffset, 56, path, "the Zip64 end record");
            if (BinaryPrimitives.ReadUInt32LittleEndian(record) != Zip64EndSignature) throw Bad(path, "the Zip64 end record has a wrong signature");
            return ((long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(32)),
                (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(48)),
                (long)BinaryPrimitives.ReadUInt64LittleEndian(record.AsSpan(40)));
        }
        throw Bad(path, "no end of central directory record: not a zip file");
    }

    // The Zip64 extra field (id 1) holds, in this order, only the fields whose 32-bit value is 0xFFFFFFFF.
    static void ApplyZip64(ReadOnlySpan<byte> extra, ref long size, ref long compressed, ref long offset, string path, string name)
    {
        while (extra.Length >= 4)
        {
            int id = BinaryPrimitives.ReadUInt16LittleEndian(extra);
            int length = BinaryPrimitives.ReadUInt16LittleEndian(extra[2..]);
            if (4 + length > extra.Length) throw Bad(path, $"member '{name}': an extra field runs past its entry");
            if (id == 1)
            {
                var field = extra.Slice(4, length);
                if (size == 0xFFFFFFFF) size = Next(ref field);
                if (compressed == 0xFFFFFFFF) compressed = Next(ref field);
                if (offset == 0xFFFFFFFF) offset = Next(ref field);
            }
            extra = extra[(4 + length)..];
        }

        long Next(ref ReadOnlySpan<byte> field)
        {
            if (field.Length < 8) throw Bad(path, $"member '{name}': the Zip64 extra field is too short");
            long value = (long)BinaryPrimitives.ReadUInt64LittleEndian(field);
            field = field[8..];
            return value;
        }
    }

    static long DataOffset(FileStream file, long length, long localOffset, long compressed, string path, string name)
    {
        if (localOffset < 0 || localOffset + 30 > length) throw Bad(path, $"member '{name}': its local header offset {localOffset} lies outside the file");
        var local = ReadAt(file, localOffset, 30, path, $"the local header of '{name}'");
        if (BinaryPrimitives.ReadUInt32LittleEndian(local) != LocalSignature) throw Bad(path, $"member '{name}': no local header at {localOffset}");
        long data = localOffset + 30 + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(26)) + BinaryPrimitives.ReadUInt16LittleEndian(local.AsSpan(28));
        if (compressed < 0 || data + compressed > length)
            throw Bad(path, $"member '{name}': its {compressed} bytes at {data} run past the end of the file ({length} bytes)");
        return data;
    }

    static byte[] ReadAt(FileStream file, long offset, int count, string path, string what)
    {
        var buffer = new byte[count];
        file.Position = offset;
        try
        {
            file.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw Bad(path, $"truncated inside {what}");
        }
        return buffer;
    }

    static InvalidDataException Bad(string path, string fault) => new($"{path}: {fault}");
}
