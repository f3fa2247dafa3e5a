using System.Buffers.Binary;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Walks the elements of a dataset (PS3.5 §7) into a flat list in file order, descending into sequences (defined or
/// undefined length, items with or without delimiters) and stepping over encapsulated pixel fragments. Every length is
/// checked against the end of its container (file, sequence or item) before anything is read or allocated, nesting is
/// bounded, and every step moves forward, so bad input ends in an <see cref="InvalidDataException"/> naming the file,
/// the element and the byte offset (in the inflated dataset for a deflated syntax).
/// </summary>
sealed class DicomParser(DicomSource source, string path, bool inflated = false)
{
    public const int MaxDepth = 32;
    public const int MaxElements = 1_000_000;
    const uint Undefined = 0xFFFFFFFF;

    public readonly record struct Syntax(bool ExplicitVR, bool BigEndian)
    {
        public static readonly Syntax ExplicitLittle = new(true, false);
        public static readonly Syntax ImplicitLittle = new(false, false);
    }

    enum Until { End, ItemDelimiter, GroupChange }

    static readonly HashSet<string> KnownVRs =
    [
        "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FD", "FL", "IS", "LO", "LT", "OB", "OD", "OF", "OL", "OV", "OW",
        "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI", "UL", "UN", "UR", "US", "UT", "UV",
    ];

    // PS3.5 §7.1.2: these VRs have two reserved bytes and a 32-bit length in explicit VR.
    static bool HasLongLength(string vr) => vr is "OB" or "OD" or "OF" or "OL" or "OV" or "OW" or "SQ" or "SV" or "UC" or "UN" or "UR" or "UT" or "UV";

    readonly List<DicomElement> elements = [];
    readonly byte[] header = new byte[12];

    public List<DicomElement> Elements => elements;

    /// <summary>Elements of group 0002 from <paramref name="start"/>, always explicit VR little endian; returns where the dataset starts.</summary>
    public long ParseFileMeta(long start) => ParseDataset(start, source.Length, Syntax.ExplicitLittle, 0, -1, -1, Until.GroupChange);

    public void ParseDataset(long start, Syntax syntax) => ParseDataset(start, source.Length, syntax, 0, -1, -1, Until.End);

    long ParseDataset(long pos, long end, Syntax syntax, int depth, int parent, int item, Until until)
    {
        while (true)
        {
            if (EndsAt(pos, end, parent, until)) return pos;
            if (end - pos < 8) throw Bad($"truncated element at byte {pos}: {end - pos} bytes left {Where(end)}, an element header needs 8");
            source.Read(pos, header.AsSpan(0, 8));
            var tag = ReadTag(header, syntax.BigEndian);
            if (tag.Group == 0xFFFE)
            {
                if (tag == DicomTag.ItemDelimitation && until == Until.ItemDelimiter) return pos + 8;
                throw Bad($"{Structure(tag)} {tag} at byte {pos} outside the place it belongs{(depth > 0 ? $" (inside {Describe(parent)})" : "")}");
            }
            var (vr, length, valueStart) = ReadVRAndLength(pos, end, tag, syntax);
            if (length == Undefined)
            {
                var open = new DicomElement(tag, vr, -1, valueStart, depth, parent, item, ReadOnlyMemory<byte>.Empty, syntax.BigEndian);
                pos = ParseUndefinedLength(open, pos, end, syntax);
                continue;
            }
            if (length > end - valueStart)
                throw Bad($"element {tag} {vr} at byte {pos} claims {length} bytes but only {end - valueStart} remain {Where(end)}");
            if (vr == "SQ")
            {
                int index = Add(new DicomElement(tag, vr, length, valueStart, depth, parent, item, ReadOnlyMemory<byte>.Empty, syntax.BigEndian));
                ParseSequence(valueStart, valueStart + length, syntax, depth + 1, index, undefinedLength: false);
            }
            else
            {
                var value = new byte[Math.Min(length, DicomElement.MaxLoaded)];
                source.Read(valueStart, value);
                Add(new DicomElement(tag, vr, length, valueStart, depth, parent, item, value, syntax.BigEndian));
            }
            pos = valueStart + length;
        }
    }

    /// <summary>Whether the dataset ends at <paramref name="pos"/>: at its container's end, or (the file meta) where group 0002 does.</summary>
    bool EndsAt(long pos, long end, int parent, Until until)
    {
        if (pos == end)
        {
            if (until == Until.ItemDelimiter) throw Bad($"an item of {Describe(parent)} has undefined length but no item delimiter before byte {end}");
            return true;
        }
        if (until != Until.GroupChange) return false;
        // The file meta ends where group 0002 does; what follows may be a deflate stream of a few bytes.
        if (end - pos < 2) return true;
        source.Read(pos, header.AsSpan(0, 2));
        return BinaryPrimitives.ReadUInt16LittleEndian(header) != 0x0002;
    }

    /// <summary>The rest of the element header whose first 8 bytes are in the header buffer: its VR, value length and where the value starts.</summary>
    (string VR, uint Length, long ValueStart) ReadVRAndLength(long pos, long end, DicomTag tag, Syntax syntax)
    {
        if (!syntax.ExplicitVR) return (DicomDictionary.Find(tag)?.VR ?? "UN", ReadUInt32(header.AsSpan(4), syntax.BigEndian), pos + 8);
        string vr = ReadVR(header.AsSpan(4, 2), tag, pos);
        if (!HasLongLength(vr))
        {
            uint length = syntax.BigEndian ? BinaryPrimitives.ReadUInt16BigEndian(header.AsSpan(6)) : BinaryPrimitives.ReadUInt16LittleEndian(header.AsSpan(6));
            return (vr, length, pos + 8);
        }
        if (end - pos < 12) throw Bad($"truncated element {tag} {vr} at byte {pos}: its header needs 12 bytes, {end - pos} are left {Where(end)}");
        source.Read(pos + 8, header.AsSpan(8, 4));
        return (vr, ReadUInt32(header.AsSpan(8), syntax.BigEndian), pos + 12);
    }

    /// <summary>An element of undefined length at <paramref name="pos"/>: encapsulated pixel data or a sequence, read up to its
    /// delimiter; returns where it ends.</summary>
    long ParseUndefinedLength(DicomElement element, long pos, long end, Syntax syntax)
    {
        int index = Add(element);
        if (element.Tag == DicomTag.PixelData && element.Depth == 0)
            return ParseFragments(element.Offset, end, syntax, index);
        if (element.VR is "SQ" or "UN")
            // An undefined-length UN is a sequence whose VR the writer did not know: its items are implicit VR little endian (PS3.5 §6.2.2).
            return ParseSequence(element.Offset, end, element.VR == "UN" ? Syntax.ImplicitLittle : syntax, element.Depth + 1, index, undefinedLength: true);
        throw Bad($"element {element.Tag} {element.VR} at byte {pos} has undefined length, which only sequences and encapsulated pixel data may have");
    }

    long ParseSequence(long pos, long end, Syntax syntax, int depth, int sequence, bool undefinedLength)
    {
        if (depth > MaxDepth) throw Bad($"sequences nested deeper than {MaxDepth} levels at {Describe(sequence)}");
        int items = 0;
        while (true)
        {
            if (!undefinedLength && pos == end) break;
            if (end - pos < 8)
                throw Bad(undefinedLength
                    ? $"{Describe(sequence)} has undefined length but no sequence delimiter before byte {end}"
                    : $"truncated item header at byte {pos} in {Describe(sequence)}");
            source.Read(pos, header.AsSpan(0, 8));
            var tag = ReadTag(header, syntax.BigEndian);
            uint length = ReadUInt32(header.AsSpan(4), syntax.BigEndian);
            if (tag == DicomTag.SequenceDelimitation)
            {
                if (!undefinedLength) throw Bad($"sequence delimiter at byte {pos} inside {Describe(sequence)}, which has an explicit length");
                pos += 8;
                break;
            }
            if (tag != DicomTag.Item) throw Bad($"{Describe(sequence)} holds {tag} at byte {pos} where an item (FFFE,E000) belongs");
            if (length == Undefined)
            {
                pos = ParseDataset(pos + 8, end, syntax, depth, sequence, items, Until.ItemDelimiter);
            }
            else
            {
                if (length > end - pos - 8)
                    throw Bad($"item {items} of {Describe(sequence)} at byte {pos} claims {length} bytes but only {end - pos - 8} remain {Where(end)}");
                ParseDataset(pos + 8, pos + 8 + length, syntax, depth, sequence, items, Until.End);
                pos += 8 + length;
            }
            items++;
        }
        elements[sequence] = elements[sequence] with { Items = items };
        return pos;
    }

    // Encapsulated pixel data (PS3.5 §A.4): items of raw bytes (the basic offset table, then fragments) and a delimiter.
    long ParseFragments(long pos, long end, Syntax syntax, int pixelData)
    {
        int fragments = 0;
        while (true)
        {
            if (end - pos < 8) throw Bad($"encapsulated pixel data has no sequence delimiter before byte {end}");
            source.Read(pos, header.AsSpan(0, 8));
            var tag = ReadTag(header, syntax.BigEndian);
            uint length = ReadUInt32(header.AsSpan(4), syntax.BigEndian);
            if (tag == DicomTag.SequenceDelimitation)
            {
                pos += 8;
                break;
            }
            if (tag != DicomTag.Item) throw Bad($"encapsulated pixel data holds {tag} at byte {pos} where a fragment item (FFFE,E000) belongs");
            if (length == Undefined) throw Bad($"pixel data fragment {fragments} at byte {pos} has undefined length");
            if (length > end - pos - 8)
                throw Bad($"pixel data fragment {fragments} at byte {pos} claims {length} bytes but only {end - pos - 8} remain {Where(end)}");
            pos += 8 + length;
            fragments++;
        }
        elements[pixelData] = elements[pixelData] with { Items = fragments };
        return pos;
    }

    int Add(DicomElement element)
    {
        if (elements.Count >= MaxElements) throw Bad($"more than {MaxElements:N0} elements");
        elements.Add(element);
        return elements.Count - 1;
    }

    string ReadVR(ReadOnlySpan<byte> bytes, DicomTag tag, long pos)
    {
        if (bytes[0] is >= (byte)'A' and <= (byte)'Z' && bytes[1] is >= (byte)'A' and <= (byte)'Z')
        {
            string vr = string.Create(2, (bytes[0], bytes[1]), (s, b) => { s[0] = (char)b.Item1; s[1] = (char)b.Item2; });
            if (KnownVRs.Contains(vr)) return vr;
            throw Bad($"element {tag} at byte {pos} has unknown VR '{vr}'");
        }
        throw Bad($"element {tag} at byte {pos} has no explicit VR (bytes {bytes[0]:x2} {bytes[1]:x2}), though the transfer syntax is explicit VR");
    }

    string Describe(int index) => index < 0 ? "the dataset" : $"sequence {elements[index].Tag}{Named(elements[index].Tag)}";

    static string Named(DicomTag tag) => DicomDictionary.Keyword(tag) is { Length: > 0 } keyword ? $" {keyword}" : "";

    string Where(long end) => end != source.Length ? $"before byte {end}, the end of its sequence or item" : inflated ? "in the inflated dataset"
        : "in the file";

    static string Structure(DicomTag tag) => tag == DicomTag.Item ? "item" : tag == DicomTag.ItemDelimitation ? "item delimiter"
        : tag == DicomTag.SequenceDelimitation ? "sequence delimiter" : "structure element";

    static DicomTag ReadTag(ReadOnlySpan<byte> b, bool bigEndian) => bigEndian
        ? new(BinaryPrimitives.ReadUInt16BigEndian(b), BinaryPrimitives.ReadUInt16BigEndian(b[2..]))
        : new(BinaryPrimitives.ReadUInt16LittleEndian(b), BinaryPrimitives.ReadUInt16LittleEndian(b[2..]));

    static uint ReadUInt32(ReadOnlySpan<byte> b, bool bigEndian) => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) :
        BinaryPrimitives.ReadUInt32LittleEndian(b);

    InvalidDataException Bad(string fault) => Dicom.Bad(path, fault);
}
