using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Medformer.Datasets.Formats;

namespace Medformer.Tests.Datasets;

/// <summary>
/// A small DICOM writer for tests: datasets in explicit or implicit VR, little or big endian, with sequences of
/// defined or undefined length, wrapped in a Part 10 file (preamble, "DICM", file meta). It writes what it is told,
/// in the order it is told, so tests can also build files that break the rules.
/// </summary>
sealed class DicomWriter
{
    abstract record Entry(DicomTag Tag, string VR);
    sealed record Value(DicomTag Tag, string VR, byte[] Bytes) : Entry(Tag, VR);
    sealed record Sequence(DicomTag Tag, bool UndefinedLength, bool UndefinedItems, DicomWriter[] Items) : Entry(Tag, "SQ");

    readonly List<Entry> entries = [];

    public bool BigEndian { get; }
    public bool ExplicitVR { get; }

    public DicomWriter(bool explicitVR = true, bool bigEndian = false)
    {
        ExplicitVR = explicitVR;
        BigEndian = bigEndian;
    }

    public static DicomWriter For(string transferSyntax) => transferSyntax switch
    {
        DicomTransferSyntax.ImplicitVRLittleEndianUid => new(false, false),
        DicomTransferSyntax.ExplicitVRBigEndianUid => new(true, true),
        _ => new(true, false),
    };

    /// <summary>Text, padded to even length with a space (a NUL for UI), as PS3.5 §6.2 asks.</summary>
    public DicomWriter Text(DicomTag tag, string vr, string text)
    {
        var bytes = Encoding.ASCII.GetBytes(text);
        if (bytes.Length % 2 == 1) bytes = [.. bytes, vr == "UI" ? (byte)0 : (byte)' '];
        return Raw(tag, vr, bytes);
    }

    public DicomWriter Decimals(DicomTag tag, params double[] values) =>
        Text(tag, "DS", string.Join("\\", values.Select(v => v.ToString("G10", System.Globalization.CultureInfo.InvariantCulture))));

    public DicomWriter UShort(DicomTag tag, params ushort[] values)
    {
        var bytes = new byte[2 * values.Length];
        for (int i = 0; i < values.Length; i++)
            if (BigEndian) BinaryPrimitives.WriteUInt16BigEndian(bytes.AsSpan(2 * i), values[i]);
            else BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(2 * i), values[i]);
        return Raw(tag, "US", bytes);
    }

    /// <summary>Samples of <paramref name="bytesPerSample"/> bytes each, in this writer's byte order.</summary>
    public DicomWriter Pixels(long[] samples, int bytesPerSample, string vr = "OW")
    {
        var bytes = new byte[samples.Length * bytesPerSample];
        for (int i = 0; i < samples.Length; i++)
        {
            var span = bytes.AsSpan(i * bytesPerSample, bytesPerSample);
            switch (bytesPerSample)
            {
                case 1: span[0] = (byte)samples[i]; break;
                case 2: if (BigEndian) BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)samples[i]);
                    else BinaryPrimitives.WriteUInt16LittleEndian(span, (ushort)samples[i]); break;
                default: if (BigEndian) BinaryPrimitives.WriteUInt32BigEndian(span, (uint)samples[i]);
                    else BinaryPrimitives.WriteUInt32LittleEndian(span, (uint)samples[i]); break;
            }
        }
        if (bytes.Length % 2 == 1) bytes = [.. bytes, 0];
        return Raw(DicomTag.PixelData, bytesPerSample == 1 ? "OB" : vr, bytes);
    }

    public DicomWriter Raw(DicomTag tag, string vr, byte[] bytes)
    {
        entries.Add(new Value(tag, vr, bytes));
        return this;
    }

    public DicomWriter Seq(DicomTag tag, bool undefinedLength, bool undefinedItems, params DicomWriter[] items)
    {
        entries.Add(new Sequence(tag, undefinedLength, undefinedItems, items));
        return this;
    }

    /// <summary>Removes every element with <paramref name="tag"/> (to make a file lack something).</summary>
    public DicomWriter Remove(DicomTag tag)
    {
        entries.RemoveAll(e => e.Tag == tag);
        return this;
    }

    public byte[] Encode()
    {
        using var stream = new MemoryStream();
        foreach (var entry in entries)
        {
            switch (entry)
            {
                case Value v:
                    Header(stream, v.Tag, v.VR, (uint)v.Bytes.Length);
                    stream.Write(v.Bytes);
                    break;
                case Sequence s:
                    var items = s.Items.Select(i => i.Encode()).ToList();
                    uint length = s.UndefinedLength ? 0xFFFFFFFF : (uint)items.Sum(i => i.Length + 8 + (s.UndefinedItems ? 8 : 0));
                    Header(stream, s.Tag, "SQ", length);
                    foreach (var item in items)
                    {
                        Tag(stream, DicomTag.Item, s.UndefinedItems ? 0xFFFFFFFF : (uint)item.Length);
                        stream.Write(item);
                        if (s.UndefinedItems) Tag(stream, DicomTag.ItemDelimitation, 0);
                    }
                    if (s.UndefinedLength) Tag(stream, DicomTag.SequenceDelimitation, 0);
                    break;
            }
        }
        return stream.ToArray();
    }

    void Header(Stream stream, DicomTag tag, string vr, uint length)
    {
        if (!ExplicitVR)
        {
            Tag(stream, tag, length);
            return;
        }
        Span<byte> b = stackalloc byte[12];
        WriteTag(b, tag, BigEndian);
        b[4] = (byte)vr[0];
        b[5] = (byte)vr[1];
        if (vr is "OB" or "OD" or "OF" or "OL" or "OV" or "OW" or "SQ" or "SV" or "UC" or "UN" or "UR" or "UT" or "UV")
        {
            b[6] = b[7] = 0;
            if (BigEndian) BinaryPrimitives.WriteUInt32BigEndian(b[8..], length); else BinaryPrimitives.WriteUInt32LittleEndian(b[8..], length);
            stream.Write(b);
        }
        else
        {
            if (BigEndian) BinaryPrimitives.WriteUInt16BigEndian(b[6..], (ushort)length); else BinaryPrimitives.WriteUInt16LittleEndian(b[6..], (ushort)length);
            stream.Write(b[..8]);
        }
    }

    void Tag(Stream stream, DicomTag tag, uint length)
    {
        Span<byte> b = stackalloc byte[8];
        WriteTag(b, tag, BigEndian);
        if (BigEndian) BinaryPrimitives.WriteUInt32BigEndian(b[4..], length); else BinaryPrimitives.WriteUInt32LittleEndian(b[4..], length);
        stream.Write(b);
    }

    static void WriteTag(Span<byte> b, DicomTag tag, bool bigEndian)
    {
        if (bigEndian)
        {
            BinaryPrimitives.WriteUInt16BigEndian(b, tag.Group);
            BinaryPrimitives.WriteUInt16BigEndian(b[2..], tag.Element);
        }
        else
        {
            BinaryPrimitives.WriteUInt16LittleEndian(b, tag.Group);
            BinaryPrimitives.WriteUInt16LittleEndian(b[2..], tag.Element);
        }
    }

    /// <summary>
    /// A Part 10 file: 128-byte preamble, "DICM", file meta (explicit VR little endian), then <paramref name="dataset"/>,
    /// deflated for the deflated syntax unless <paramref name="compress"/> is false.
    /// </summary>
    public static byte[] File(byte[] dataset, string transferSyntax, string sopInstanceUid = "1.2.3.4", bool compress = true)
    {
        var meta = new DicomWriter()
            .Raw(new DicomTag(2, 1), "OB", [0, 1])
            .Text(new DicomTag(2, 2), "UI", "1.2.840.10008.5.1.4.1.1.2")
            .Text(new DicomTag(2, 3), "UI", sopInstanceUid)
            .Text(DicomTag.TransferSyntaxUID, "UI", transferSyntax)
            .Text(new DicomTag(2, 0x12), "UI", "1.2.3.999")
            .Encode();
        var groupLength = new DicomWriter().Raw(new DicomTag(2, 0), "UL", BitConverter.GetBytes((uint)meta.Length)).Encode();
        if (compress && transferSyntax == DicomTransferSyntax.DeflatedExplicitVRLittleEndianUid) dataset = Deflate(dataset);
        return [.. new byte[128], .. "DICM"u8, .. groupLength, .. meta, .. dataset];
    }

    public byte[] File(string transferSyntax) => File(Encode(), transferSyntax);

    static byte[] Deflate(byte[] data)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true)) deflate.Write(data);
        return output.ToArray();
    }

    /// <summary>
    /// A CT-like image: rows × columns, one or more frames of 16-bit samples, optional rescale and plane geometry;
    /// any attribute left null is not written.
    /// </summary>
    public static DicomWriter Image(string transferSyntax, int rows, int columns, long[] samples, int frames = 1, int bitsAllocated = 16, int bitsStored = 16,
        int pixelRepresentation = 1, string photometric = "MONOCHROME2", int samplesPerPixel = 1, int? planar = null,
        double[]? spacing = null, double[]? orientation = null, double[]? position = null, int? instance = null,
        string seriesUid = "1.2.3.100", double? slope = null, double? intercept = null, string modality = "CT", double? thickness = null)
    {
        var w = For(transferSyntax);
        w.Text(DicomTag.SOPClassUID, "UI", "1.2.840.10008.5.1.4.1.1.2");
        w.Text(DicomTag.SOPInstanceUID, "UI", $"1.2.3.4.{instance ?? 0}");
        w.Text(DicomTag.Modality, "CS", modality);
        w.Text(DicomTag.PatientID, "LO", "PHANTOM");
        if (thickness is { } t) w.Decimals(DicomTag.SliceThickness, t);
        w.Text(DicomTag.StudyInstanceUID, "UI", "1.2.3.1");
        w.Text(DicomTag.SeriesInstanceUID, "UI", seriesUid);
        if (instance is { } n) w.Text(DicomTag.InstanceNumber, "IS", n.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (position is not null) w.Decimals(DicomTag.ImagePositionPatient, position);
        if (orientation is not null) w.Decimals(DicomTag.ImageOrientationPatient, orientation);
        w.UShort(DicomTag.SamplesPerPixel, (ushort)samplesPerPixel);
        w.Text(DicomTag.PhotometricInterpretation, "CS", photometric);
        if (planar is { } p) w.UShort(DicomTag.PlanarConfiguration, (ushort)p);
        if (frames != 1) w.Text(DicomTag.NumberOfFrames, "IS", frames.ToString(System.Globalization.CultureInfo.InvariantCulture));
        w.UShort(DicomTag.Rows, (ushort)rows);
        w.UShort(DicomTag.Columns, (ushort)columns);
        if (spacing is not null) w.Decimals(DicomTag.PixelSpacing, spacing);
        w.UShort(DicomTag.BitsAllocated, (ushort)bitsAllocated);
        w.UShort(DicomTag.BitsStored, (ushort)bitsStored);
        w.UShort(DicomTag.HighBit, (ushort)(bitsStored - 1));
        w.UShort(DicomTag.PixelRepresentation, (ushort)pixelRepresentation);
        if (intercept is { } i) w.Decimals(DicomTag.RescaleIntercept, i);
        if (slope is { } s) w.Decimals(DicomTag.RescaleSlope, s);
        w.Pixels(samples, bitsAllocated / 8);
        return w;
    }
}
