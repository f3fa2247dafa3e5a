using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>
/// One data element as it lies in the file: tag, VR, value length (-1 when undefined), where its value starts, and
/// where it sits (<see cref="Depth"/> 0 is the top-level dataset; nested elements name their sequence by its index in
/// <see cref="DicomFile.Elements"/> and their item by number). Items and delimiters are structure and are not listed.
/// <see cref="Value"/> holds the value's first <see cref="MaxLoaded"/> bytes at most: enough for every attribute the
/// reader interprets and for a listing; pixel data and other bulk values are read from the file when needed.
/// </summary>
public sealed record DicomElement(
    DicomTag Tag,
    string VR,
    long Length,
    long Offset,
    int Depth,
    int Parent,
    int Item,
    ReadOnlyMemory<byte> Value,
    bool BigEndian)
{
    public const int MaxLoaded = 4096;

    /// <summary>Items of a sequence, or fragments of encapsulated pixel data (the offset table included).</summary>
    public int Items { get; init; }

    public string Keyword => DicomDictionary.Keyword(Tag);

    public bool IsUndefinedLength => Length < 0;

    public bool IsSequence => VR == "SQ" || (VR == "UN" && IsUndefinedLength && Tag != DicomTag.PixelData);

    /// <summary>The whole value is in <see cref="Value"/>.</summary>
    public bool IsLoaded => Length >= 0 && Value.Length == Length;

    internal static bool IsText(string vr) => vr is "AE" or "AS" or "CS" or "DA" or "DS" or "DT" or "IS" or "LO" or "LT" or "PN"
        or "SH" or "ST" or "TM" or "UC" or "UI" or "UR" or "UT";

    /// <summary>The value as text, as dcmdump shows it, cut to about <paramref name="maxChars"/> characters.</summary>
    public string ValueText(int maxChars = 64)
    {
        if (IsSequence) return $"(Sequence with {(IsUndefinedLength ? "undefined" : "explicit")} length, {Items} item{(Items == 1 ? "" : "s")})";
        if (IsUndefinedLength) return $"(Encapsulated pixel data, {Items} fragment{(Items == 1 ? "" : "s")})";
        if (Length == 0) return "(no value)";
        var text = new StringBuilder();
        var bytes = Value.Span;
        if (IsText(VR))
        {
            text.Append(Encoding.Latin1.GetString(bytes).TrimEnd(' ', '\0'));
        }
        else
        {
            int size = VR switch { "US" or "SS" or "OW" => 2, "UL" or "SL" or "FL" or "OF" or "OL" or "AT" => 4, "FD" or "OD" or "SV" or "UV" or "OV" => 8,
                _ => 1 };
            for (int at = 0; at + size <= bytes.Length && text.Length <= maxChars; at += size)
            {
                if (at > 0) text.Append('\\');
                text.Append(Format(bytes.Slice(at, size)));
            }
        }
        bool cut = !IsLoaded || text.Length > maxChars;
        if (text.Length > maxChars) text.Length = maxChars;
        if (cut) text.Append($"... ({Length} bytes)");
        return text.ToString();
    }

    string Format(ReadOnlySpan<byte> b)
    {
        var c = CultureInfo.InvariantCulture;
        return VR switch
        {
            "US" => U16(b).ToString(c),
            "SS" => ((short)U16(b)).ToString(c),
            "UL" => U32(b).ToString(c),
            "SL" => ((int)U32(b)).ToString(c),
            "FL" => BitConverter.Int32BitsToSingle((int)U32(b)).ToString("G7", c),
            "FD" => BitConverter.Int64BitsToDouble((long)U64(b)).ToString("G15", c),
            "SV" => ((long)U64(b)).ToString(c),
            "UV" => U64(b).ToString(c),
            "AT" => new DicomTag(U16(b), U16(b[2..])).ToString(),
            "OW" => U16(b).ToString("x4", c),
            "OF" or "OL" => U32(b).ToString("x8", c),
            "OD" or "OV" => U64(b).ToString("x16", c),
            _ => b[0].ToString("x2", c),
        };
    }

    ushort U16(ReadOnlySpan<byte> b) => BigEndian ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b);
    uint U32(ReadOnlySpan<byte> b) => BigEndian ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b);
    ulong U64(ReadOnlySpan<byte> b) => BigEndian ? BinaryPrimitives.ReadUInt64BigEndian(b) : BinaryPrimitives.ReadUInt64LittleEndian(b);

    public override string ToString() => $"{Tag} {VR} {ValueText()}";
}
