using System.Buffers.Binary;
using System.Globalization;
using System.IO.Compression;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>
/// A parsed DICOM Part 10 file (PS3.10 §7): the file meta information (group 0002) and the dataset, as a flat list
/// of elements in file order, with typed access to the attributes a reader needs. Pixel data is located, not read:
/// <see cref="Dicom.Read(string)"/> reads it. Like pydicom's <c>dcmread(path, stop_before_pixels=True)</c>, but the
/// pixel data's extent is checked too.
/// </summary>
public sealed class DicomFile
{
    /// <summary>A deflated dataset may not inflate beyond this (a small file must not become gigabytes in memory).</summary>
    public const long MaxInflatedLength = Inflation.MaxUndeclared;

    const int PreambleLength = 128;

    readonly Dictionary<DicomTag, int> topLevel = [];

    DicomFile(string path, DicomTransferSyntax syntax, List<DicomElement> elements, int metaCount, long datasetOffset)
    {
        Path = path;
        TransferSyntax = syntax;
        Elements = elements;
        MetaCount = metaCount;
        DatasetOffset = datasetOffset;
        for (int i = 0; i < elements.Count; i++)
            if (elements[i].Depth == 0) topLevel.TryAdd(elements[i].Tag, i);
    }

    public string Path { get; }

    public DicomTransferSyntax TransferSyntax { get; }

    /// <summary>Every element in file order: the file meta (the first <see cref="MetaCount"/>), then the dataset with the elements of sequences after the
    /// sequence.</summary>
    public IReadOnlyList<DicomElement> Elements { get; }

    public int MetaCount { get; }

    /// <summary>Where the dataset starts in the file (after the file meta); offsets of dataset elements count from the inflated stream when the syntax is
    /// deflated.</summary>
    public long DatasetOffset { get; }

    /// <summary>The top-level Pixel Data (7FE0,0010) element, or null.</summary>
    public DicomElement? PixelData => Find(DicomTag.PixelData);

    /// <summary>Parses the file at <paramref name="path"/> (the pixel data is located, not read).</summary>
    public static DicomFile Read(string path)
    {
        using var source = DicomSource.Open(path);
        return Parse(source, path, out _);
    }

    /// <summary>Parses a file held in memory; <paramref name="path"/> names it in errors.</summary>
    public static DicomFile Read(ReadOnlyMemory<byte> bytes, string path)
    {
        using var source = DicomSource.FromBytes(bytes);
        return Parse(source, path, out _);
    }

    /// <summary>
    /// Parses the file in <paramref name="source"/> (only its file meta if <paramref name="metaOnly"/>).
    /// <paramref name="dataset"/> is where the dataset's offsets point: the file itself, or, for a deflated syntax, the
    /// inflated dataset in memory.
    /// </summary>
    internal static DicomFile Parse(DicomSource source, string path, out DicomSource dataset, bool metaOnly = false)
    {
        dataset = source;
        if (source.Length < PreambleLength + 4)
            throw Dicom.Bad(path, $"not a DICOM file: {source.Length} bytes, shorter than the 128-byte preamble and 'DICM'");
        Span<byte> magic = stackalloc byte[4];
        source.Read(PreambleLength, magic);
        if (!magic.SequenceEqual("DICM"u8))
            throw Dicom.Bad(path, "not a DICOM Part 10 file: no 'DICM' after the 128-byte preamble");
        var parser = new DicomParser(source, path);
        long datasetOffset = parser.ParseFileMeta(PreambleLength + 4);
        int metaCount = parser.Elements.Count;
        var uidElement = parser.Elements.FirstOrDefault(e => e.Tag == DicomTag.TransferSyntaxUID)
            ?? throw Dicom.Bad(path, "the file meta information has no Transfer Syntax UID (0002,0010)");
        string uid = Text(uidElement);
        var syntax = DicomTransferSyntax.Find(uid)
            ?? throw new NotSupportedException($"{path}: transfer syntax '{uid}' is not a standard one; its encoding is unknown");
        if (metaOnly) return new DicomFile(path, syntax, parser.Elements, metaCount, datasetOffset);
        if (!syntax.Deflated)
        {
            parser.ParseDataset(datasetOffset, new DicomParser.Syntax(syntax.ExplicitVR, syntax.BigEndian));
            return new DicomFile(path, syntax, parser.Elements, metaCount, datasetOffset);
        }
        dataset = Inflate(source, datasetOffset, path);
        var inflated = new DicomParser(dataset, path, inflated: true);
        inflated.ParseDataset(0, DicomParser.Syntax.ExplicitLittle);
        // One list: the dataset's sequence indices shift by the file meta's elements.
        var all = parser.Elements.Concat(inflated.Elements.Select(e => e with { Parent = e.Parent < 0 ? -1 : e.Parent + metaCount })).ToList();
        return new DicomFile(path, syntax, all, metaCount, datasetOffset);
    }

    // Deflated Explicit VR Little Endian (PS3.5 §A.5): everything after the file meta is raw deflate (RFC 1951).
    // Nothing declares the inflated length, so a first pass only counts (refusing past the cap while holding one
    // 64 KiB buffer) and a second fills one array of exactly that length: memory never passes the cap, and no
    // growing buffer ever holds two copies (a doubling MemoryStream peaked at twice the cap and more).
    static DicomSource Inflate(DicomSource source, long offset, string path)
    {
        var compressed = new byte[source.Length - offset];
        source.Read(offset, compressed);
        var buffer = new byte[1 << 16];
        long length = 0;
        Inflating(path, () =>
        {
            using var counter = new DeflateStream(new MemoryStream(compressed), CompressionMode.Decompress);
            int n;
            while ((n = counter.Read(buffer)) > 0)
            {
                length += n;
                if (length > MaxInflatedLength)
                    throw Dicom.Bad(path, $"the deflated dataset inflates beyond {MaxInflatedLength >> 20} MiB");
            }
        });
        var inflated = GC.AllocateUninitializedArray<byte>((int)length);
        Inflating(path, () =>
        {
            using var inflater = new DeflateStream(new MemoryStream(compressed), CompressionMode.Decompress);
            inflater.ReadExactly(inflated);
        });
        return DicomSource.FromBytes(inflated);
    }

    static void Inflating(string path, Action inflate)
    {
        try
        {
            inflate();
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw Dicom.Bad(path, $"the deflated dataset is not valid deflate data ({e.Message})");
        }
    }

    /// <summary>The top-level element with <paramref name="tag"/>, or null.</summary>
    public DicomElement? Find(DicomTag tag) => topLevel.TryGetValue(tag, out int i) ? Elements[i] : null;

    /// <summary>
    /// The element at a path of sequences, taking the first item of each (e.g. SharedFunctionalGroupsSequence,
    /// PixelMeasuresSequence, PixelSpacing), or null.
    /// </summary>
    public DicomElement? Find(params DicomTag[] path)
    {
        if (path.Length == 0 || !topLevel.TryGetValue(path[0], out int index)) return null;
        for (int level = 1; level < path.Length; level++)
        {
            int? child = FindInItem(index, 0, path[level]);
            if (child is null) return null;
            index = child.Value;
        }
        return Elements[index];
    }

    /// <summary>The index of the element with <paramref name="tag"/> in item <paramref name="item"/> of the sequence at <paramref name="sequence"/>.</summary>
    internal int? FindInItem(int sequence, int item, DicomTag tag)
    {
        if (nested is null)
        {
            // Built once: enhanced multi-frame files ask for an element in each of thousands of items.
            nested = [];
            for (int i = 0; i < Elements.Count; i++)
                if (Elements[i].Parent >= 0) nested.TryAdd((Elements[i].Parent, Elements[i].Item, Elements[i].Tag), i);
        }
        return nested.TryGetValue((sequence, item, tag), out int index) ? index : null;
    }

    Dictionary<(int Parent, int Item, DicomTag Tag), int>? nested;

    internal int? IndexOf(DicomTag tag) => topLevel.TryGetValue(tag, out int i) ? i : null;

    /// <summary>A text value (trailing spaces and NULs removed), or null when absent or empty.</summary>
    public string? GetString(DicomTag tag) => Find(tag) is { } e ? GetString(e) : null;

    public string? GetString(DicomElement element)
    {
        if (element.IsSequence || element.Length == 0) return null;
        Require(element, DicomElement.IsText(EffectiveVR(element)), "text");
        string text = Text(element).Trim(' ');
        return text.Length == 0 ? null : text;
    }

    /// <summary>A decimal string (DS) or float (FL, FD) value, all its values; null when absent or empty.</summary>
    public double[]? GetDecimals(DicomTag tag) => Find(tag) is { } e ? GetDecimals(e) : null;

    public double[]? GetDecimals(DicomElement element)
    {
        if (element.IsSequence || element.Length == 0) return null;
        string vr = EffectiveVR(element);
        if (vr is "FL" or "FD")
        {
            Require(element, true, "numbers");
            int size = vr == "FL" ? 4 : 8;
            var bytes = element.Value.Span;
            if (bytes.Length % size != 0) throw Dicom.Bad(Path, $"{Name(element)}: {bytes.Length} bytes of {vr} are not a whole number of {size}-byte values");
            var values = new double[bytes.Length / size];
            for (int i = 0; i < values.Length; i++)
            {
                var b = bytes.Slice(i * size, size);
                values[i] = size == 4
                    ? BitConverter.Int32BitsToSingle(element.BigEndian ? BinaryPrimitives.ReadInt32BigEndian(b) : BinaryPrimitives.ReadInt32LittleEndian(b))
                    : BitConverter.Int64BitsToDouble(element.BigEndian ? BinaryPrimitives.ReadInt64BigEndian(b) : BinaryPrimitives.ReadInt64LittleEndian(b));
            }
            return Finite(element, values);
        }
        Require(element, vr is "DS" or "IS", "a decimal string (DS)");
        string? text = GetString(element);
        if (text is null) return null;
        var parts = text.Split('\\');
        var result = new double[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!double.TryParse(parts[i].Trim(' ', '\0'), NumberStyles.Float, CultureInfo.InvariantCulture, out result[i]))
                throw Dicom.Bad(Path, $"{Name(element)}: '{Cut(text)}' is not a decimal string");
        return Finite(element, result);
    }

    /// <summary>An integer value (US, SS, UL, SL or an integer string IS), the first of several; null when absent or empty.</summary>
    public long? GetInteger(DicomTag tag) => Find(tag) is { } e ? GetInteger(e) : null;

    public long? GetInteger(DicomElement element)
    {
        if (element.IsSequence || element.Length == 0) return null;
        var b = element.Value.Span;
        bool big = element.BigEndian;
        switch (EffectiveVR(element))
        {
            case "US" when b.Length >= 2: return big ? BinaryPrimitives.ReadUInt16BigEndian(b) : BinaryPrimitives.ReadUInt16LittleEndian(b);
            case "SS" when b.Length >= 2: return big ? BinaryPrimitives.ReadInt16BigEndian(b) : BinaryPrimitives.ReadInt16LittleEndian(b);
            case "UL" when b.Length >= 4: return big ? BinaryPrimitives.ReadUInt32BigEndian(b) : BinaryPrimitives.ReadUInt32LittleEndian(b);
            case "SL" when b.Length >= 4: return big ? BinaryPrimitives.ReadInt32BigEndian(b) : BinaryPrimitives.ReadInt32LittleEndian(b);
            case "IS":
                string? text = GetString(element);
                if (text is null) return null;
                string first = text.Split('\\')[0].Trim(' ', '\0');
                if (!long.TryParse(first, NumberStyles.AllowLeadingSign | NumberStyles.AllowLeadingWhite | NumberStyles.AllowTrailingWhite,
                    CultureInfo.InvariantCulture, out long value)
                    || value is < int.MinValue or > int.MaxValue)
                    throw Dicom.Bad(Path, $"{Name(element)}: '{Cut(text)}' is not an integer string");
                return value;
            default:
                throw Dicom.Bad(Path, $"{Name(element)}: VR {element.VR} with {element.Length} bytes is not an integer");
        }
    }

    /// <summary>The file as dcmdump lists it: one line per element, indented by depth, values cut to <paramref name="maxChars"/>.</summary>
    public string Dump(int maxChars = 64)
    {
        var text = new StringBuilder();
        text.AppendLine($"# {Path}");
        text.AppendLine($"# File meta information ({MetaCount} elements); dataset in {TransferSyntax}");
        for (int i = 0; i < Elements.Count; i++)
        {
            if (i == MetaCount) text.AppendLine("# Dataset");
            var e = Elements[i];
            string length = e.IsUndefinedLength ? "u/l" : e.Length.ToString(CultureInfo.InvariantCulture);
            text.Append(' ', 2 * e.Depth).Append(e.Tag).Append(' ').Append(e.VR).Append(' ')
                .Append(e.IsSequence || e.IsUndefinedLength ? e.ValueText(maxChars) : $"[{e.ValueText(maxChars)}]")
                .Append("  # ").Append(length).Append(", ").AppendLine(e.Keyword.Length > 0 ? e.Keyword : e.Tag.IsPrivate ? "(private)" : "(unknown)");
        }
        return text.ToString();
    }

    /// <summary>The imaging attributes, checked; fails when the file holds no image.</summary>
    public DicomImageInfo GetImageInfo() => DicomImageInfo.From(this);

    void Require(DicomElement element, bool ok, string what)
    {
        if (!ok) throw Dicom.Bad(Path, $"{Name(element)}: VR {element.VR} where {what} belongs");
        if (!element.IsLoaded) throw Dicom.Bad(Path,
            $"{Name(element)}: a value of {element.Length} bytes is beyond the {DicomElement.MaxLoaded}-byte limit for such an attribute");
    }

    double[] Finite(DicomElement element, double[] values)
    {
        if (values.Any(v => !double.IsFinite(v))) throw Dicom.Bad(Path, $"{Name(element)}: a value is not finite");
        return values;
    }

    // A known attribute that a writer stored as UN keeps its dictionary VR (as pydicom reads it).
    static string EffectiveVR(DicomElement element) => element.VR == "UN" ? DicomDictionary.Find(element.Tag)?.VR ?? "UN" : element.VR;

    internal static string Name(DicomElement element) => element.Keyword.Length > 0 ? $"{element.Tag} {element.Keyword}" : element.Tag.ToString();

    static string Text(DicomElement element) => Encoding.Latin1.GetString(element.Value.Span).TrimEnd(' ', '\0');

    static string Cut(string text) => text.Length <= 40 ? text : text[..40] + "...";
}
