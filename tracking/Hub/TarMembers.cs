using System.Text;

namespace Medformer.Tracking.Hub;

/// <summary>A regular file of a tar archive: its path (after PAX or GNU long names) and length.</summary>
public sealed record TarMember(string Name, long Size);

/// <summary>
/// A tar reader for model archives, strict where System.Formats.Tar is trusting: ustar, GNU and PAX headers with
/// their checksums checked; PAX and GNU long-name records of at most <see cref="MaxRecord"/> bytes (a header is
/// names and sizes, not megabytes); only regular files and folders. Sparse members, links, devices and FIFOs are
/// refused with a line naming the member, so nothing a hostile archive holds becomes an exception of the library,
/// a huge allocation or a file outside the folder.
/// </summary>
public sealed class TarMembers(Stream stream, string source)
{
    public const int MaxRecord = 64 * 1024;
    const int Block = 512;

    readonly byte[] header = new byte[Block];
    long remaining;   // data of the current member not yet read
    long padding;     // zeros after it, up to the next block
    long offset;      // bytes of the archive read so far, for messages

    /// <summary>The next regular file, or null at the end; folders are passed over.</summary>
    public TarMember? Next()
    {
        Skip(remaining + padding);
        (remaining, padding) = (0, 0);
        string? longName = null, paxPath = null;
        long? paxSize = null;
        while (true)
        {
            long at = offset;
            int read = stream.ReadAtLeast(header, Block, throwOnEndOfStream: false);
            offset += read;
            if (read == 0) return null;   // no end-of-archive blocks: tolerated, as GNU tar does
            if (read < Block) throw Bad($"truncated in the header at byte {at}");
            if (header.All(b => b == 0)) return null;
            CheckChecksum(at);
            char type = (char)header[156];
            long size = Number(124, 12, at);
            string name = Text(0, 100);
            if (header.AsSpan(257, 5).SequenceEqual("ustar"u8) && Text(345, 155) is { Length: > 0 } prefix) name = prefix + "/" + name;
            string shown = paxPath ?? longName ?? name;
            switch (type)
            {
                case 'x':
                    foreach (var (key, value) in PaxRecords(Record(size, $"the PAX header of '{name}'")))
                    {
                        if (key.StartsWith("GNU.sparse.", StringComparison.Ordinal))
                            throw Bad($"'{name}' is a sparse file; a model archive holds only plain files");
                        if (key == "path") paxPath = value;
                        if (key == "size") paxSize = long.TryParse(value, out long n) && n >= 0 ? n :
                            throw Bad($"the PAX size '{value}' of '{name}' is not a length");
                    }
                    continue;
                case 'g':
                    _ = Record(size, "a global PAX header");
                    continue;
                case 'L':
                    longName = Encoding.UTF8.GetString(Record(size, "a GNU long name")).TrimEnd('\0');
                    continue;
                case '0' or '\0' or '7':
                    remaining = paxSize ?? size;
                    padding = (Block - remaining % Block) % Block;
                    return new TarMember(shown, remaining);
                case '5':
                    Skip(size + (Block - size % Block) % Block);
                    (longName, paxPath, paxSize) = (null, null, null);
                    continue;
                default:
                    throw Bad($"'{shown}' is {Kind(type)}; a model archive holds only plain files");
            }
        }
    }

    /// <summary>Copies the current member's bytes to <paramref name="output"/>.</summary>
    public void CopyData(Stream output)
    {
        var buffer = new byte[1 << 20];
        while (remaining > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, remaining));
            if (read == 0) throw Bad($"truncated: a member ends {remaining} bytes early");
            output.Write(buffer, 0, read);
            remaining -= read;
            offset += read;
        }
    }

    static string Kind(char type) => type switch
    {
        'S' => "a sparse file",
        '1' => "a hard link",
        '2' => "a symbolic link",
        'K' => "a link (GNU long link name)",
        '3' => "a character device",
        '4' => "a block device",
        '6' => "a FIFO",
        _ => $"a member of type '{(char.IsControl(type) ? $"\\x{(int)type:x2}" : type.ToString())}'",
    };

    InvalidDataException Bad(string what) => new($"{source}: {what}; refused");

    void CheckChecksum(long at)
    {
        long stored = Number(148, 8, at);
        long unsigned = 0, signed = 0;
        for (int i = 0; i < Block; i++)
        {
            byte b = i is >= 148 and < 156 ? (byte)' ' : header[i];
            unsigned += b;
            signed += (sbyte)b;
        }
        if (stored != unsigned && stored != signed) throw Bad($"not a tar header at byte {at} (its checksum does not match)");
    }

    // Octal digits (space or NUL ended), or GNU's base-256 for large sizes (first byte 0x80).
    long Number(int start, int length, long at)
    {
        var field = header.AsSpan(start, length);
        if (field[0] == 0x80)
        {
            long value = 0;
            foreach (byte b in field[1..])
            {
                if (value > (long.MaxValue >> 8)) throw Bad($"a size in the header at byte {at} overflows");
                value = (value << 8) | b;
            }
            return value;
        }
        long result = 0;
        bool digits = false;
        foreach (byte b in field)
        {
            if (b is (byte)' ' or 0) { if (digits) break; continue; }
            if (b is < (byte)'0' or > (byte)'7' || result > (long.MaxValue >> 3)) throw Bad($"the header at byte {at} has a malformed number");
            result = (result << 3) | (long)(b - '0');
            digits = true;
        }
        return result;
    }

    string Text(int start, int length)
    {
        var field = header.AsSpan(start, length);
        int end = field.IndexOf((byte)0);
        return Encoding.UTF8.GetString(end < 0 ? field : field[..end]);
    }

    byte[] Record(long size, string what)
    {
        if (size > MaxRecord) throw Bad($"{what} is {size} bytes, over the limit of {MaxRecord}");
        var record = new byte[size];
        if (stream.ReadAtLeast(record, (int)size, throwOnEndOfStream: false) < size) throw Bad($"truncated in {what}");
        offset += size;
        Skip((Block - size % Block) % Block);
        return record;
    }

    // PAX records: "LENGTH key=value\n", LENGTH counting the whole record.
    List<(string Key, string Value)> PaxRecords(byte[] data)
    {
        var records = new List<(string, string)>();
        int position = 0;
        while (position < data.Length)
        {
            int space = Array.IndexOf(data, (byte)' ', position);
            if (space < 0 || !int.TryParse(data.AsSpan(position, space - position),
                out int length) || length <= space - position || length > data.Length - position || data[position + length - 1] != '\n')
                throw Bad($"a malformed PAX record at byte {position} of a PAX header");
            string text = Encoding.UTF8.GetString(data, space + 1, position + length - space - 2);
            int equals = text.IndexOf('=');
            if (equals <= 0) throw Bad($"a PAX record without key=value at byte {position} of a PAX header");
            records.Add((text[..equals], text[(equals + 1)..]));
            position += length;
        }
        return records;
    }

    void Skip(long count)
    {
        var buffer = new byte[Math.Min(count, 1 << 16)];
        while (count > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(buffer.Length, count));
            if (read == 0) throw Bad("truncated");
            count -= read;
            offset += read;
        }
    }
}
