using System.Buffers.Binary;
using Medformer.Datasets.Formats;
using Xunit;

namespace Medformer.Tests.Datasets;

/// <summary>
/// One fault per file, each refused with an exception whose message starts with the file's path and says what is
/// wrong: <see cref="InvalidDataException"/> for malformed files, <see cref="NotSupportedException"/> for valid ones this
/// reader cannot decode. Files are written by <see cref="DicomWriter"/> and then broken byte by byte.
/// </summary>
public sealed class DicomMalformedTests : IDisposable
{
    const string Explicit = DicomTransferSyntax.ExplicitVRLittleEndianUid;
    readonly DicomTestFiles files = new();

    public void Dispose() => files.Dispose();

    static DicomWriter Valid() => DicomWriter.Image(Explicit, 2, 2, [1, 2, 3, 4], spacing: [1, 1], orientation: [1, 0, 0, 0, 1, 0], position: [0, 0, 0]);

    static byte[] ValidFile() => Valid().File(Explicit);

    /// <summary>Where an element's value and its length field start in <paramref name="file"/> (explicit VR little endian).</summary>
    static (long Value, int LengthAt, int LengthSize) Locate(byte[] file, DicomTag tag)
    {
        var element = DicomFile.Read(file, "memory").Elements.First(e => e.Tag == tag);
        bool wide = element.VR is "OB" or "OW" or "SQ" or "UN" or "UT";
        return (element.Offset, (int)element.Offset - (wide ? 4 : 2), wide ? 4 : 2);
    }

    static byte[] WithLength(byte[] file, DicomTag tag, uint length)
    {
        var (_, at, size) = Locate(file, tag);
        var copy = file.ToArray();
        if (size == 4) BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan(at), length);
        else BinaryPrimitives.WriteUInt16LittleEndian(copy.AsSpan(at), (ushort)length);
        return copy;
    }

    static DicomWriter Nested(int depth) => depth == 0
        ? new DicomWriter().Text(DicomTag.Modality, "CS", "CT")
        : new DicomWriter().Seq(new DicomTag(0x0008, 0x1140), depth % 2 == 0, depth % 3 == 0, Nested(depth - 1));

    static byte[] MetaWithout(DicomTag missing, string syntax)
    {
        var meta = new DicomWriter().Raw(new DicomTag(2, 1), "OB", [0, 1]).Text(DicomTag.TransferSyntaxUID, "UI", syntax).Remove(missing).Encode();
        return [.. new byte[128], .. "DICM"u8, .. meta, .. Valid().Encode()];
    }

    static readonly byte[] ItemTag = [0xFE, 0xFF, 0x00, 0xE0];

    static byte[] Image(Func<DicomWriter, DicomWriter> change) => change(Valid()).File(Explicit);

    static DicomWriter Replace(DicomWriter writer, DicomTag tag, string vr, string text) => writer.Remove(tag).Text(tag, vr, text);

    public static TheoryData<string> Faults => [.. Cases.Keys];

    static readonly Dictionary<string, (Func<byte[]> File, Type Exception, string Fault)> Cases = new()
    {
        ["shorter than the preamble"] = (() => new byte[100], typeof(InvalidDataException), "100 bytes, shorter than the 128-byte preamble and 'DICM'"),
        ["DICM missing"] = (() => [.. ValidFile()[..128], .. "DICX"u8, .. ValidFile()[132..]], typeof(InvalidDataException),
            "no 'DICM' after the 128-byte preamble"),
        ["truncated element header"] = (() => ValidFile()[..(int)(Locate(ValidFile(), DicomTag.PixelData).Value - 2)], typeof(InvalidDataException),
            "truncated element (7FE0,0010) OW at byte 502: its header needs 12 bytes, 10 are left in the file"),
        ["truncated tag"] = (() => ValidFile()[..(int)(Locate(ValidFile(), DicomTag.PixelData).Value - 7)], typeof(InvalidDataException),
            "truncated element at byte 502: 5 bytes left in the file"),
        ["truncated inside an element"] = (() => ValidFile()[..(int)(Locate(ValidFile(), DicomTag.Rows).Value - 4)], typeof(InvalidDataException),
            "truncated element at byte"),
        ["element beyond the file"] = (() => WithLength(ValidFile(), DicomTag.PatientID, 0xFFF0), typeof(InvalidDataException), "(0010,0020) LO at byte"),
        ["length that would overflow"] = (() => WithLength(ValidFile(), DicomTag.PixelData, 0xFFFFFFFE), typeof(InvalidDataException),
            "claims 4294967294 bytes but only 8 remain in the file"),
        ["undefined length on text"] = (() => WithLength(Image(w => w.Raw(new DicomTag(0x0020, 0x4000), "UT", "note"u8.ToArray())), new DicomTag(0x0020,
            0x4000), 0xFFFFFFFF),
            typeof(InvalidDataException), "(0020,4000) UT at byte"),
        ["sequence without delimiter"] = (() => new DicomWriter().Text(DicomTag.Modality, "CS", "CT").Seq(new DicomTag(0x0008, 0x1140), true, false,
            Nested(0)).File(Explicit)[..^8],
            typeof(InvalidDataException), "sequence (0008,1140) ReferencedImageSequence has undefined length but no sequence delimiter"),
        ["item without delimiter"] = (() => new DicomWriter().Seq(new DicomTag(0x0008, 0x1140), true, true, Nested(0)).File(Explicit)[..^16],
            typeof(InvalidDataException), "an item of sequence (0008,1140) ReferencedImageSequence has undefined length but no item delimiter"),
        ["item beyond its sequence"] = (() => Patch(new DicomWriter().Seq(new DicomTag(0x0008, 0x1140), false, false, Nested(0)).File(Explicit), ItemTag, 4,
            200),
            typeof(InvalidDataException), "item 0 of sequence (0008,1140) ReferencedImageSequence at byte"),
        ["sequences nested too deep"] = (() => Nested(40).File(Explicit), typeof(InvalidDataException), "sequences nested deeper than 32 levels"),
        ["sequence delimiter in an explicit-length sequence"] = (() => Patch(new DicomWriter().Seq(new DicomTag(0x0008, 0x1140), false, false,
            Nested(0)).File(Explicit),
            ItemTag, 2, 0xE0DD), typeof(InvalidDataException), "sequence delimiter at byte"),
        ["element where an item belongs"] = (() => Patch(new DicomWriter().Seq(new DicomTag(0x0008, 0x1140), false, false, Nested(0)).File(Explicit),
            ItemTag, 0, 0x0008), typeof(InvalidDataException), "holds (0008,E000) at byte"),
        ["item outside a sequence"] = (() => Image(w => w.Raw(DicomTag.Item, "OB", [])), typeof(InvalidDataException), "item (FFFE,E000) at byte"),
        ["pixel data too short"] = (() => DicomWriter.Image(Explicit, 100, 100, new long[10]).File(Explicit), typeof(InvalidDataException),
            "Pixel Data holds 20 bytes but 100 rows × 100 columns × 1 frame × 1 sample × 16 bits need 20000"),
        ["frames beyond the pixel data"] = (() => DicomWriter.Image(Explicit, 2, 2, new long[4], frames: 1_000_000_000).File(Explicit),
            typeof(InvalidDataException),
            "Pixel Data holds 8 bytes but 2 rows × 2 columns × 1000000000 frames × 1 sample × 16 bits need 8000000000"),
        ["no transfer syntax"] = (() => MetaWithout(DicomTag.TransferSyntaxUID, Explicit), typeof(InvalidDataException), "no Transfer Syntax UID (0002,0010)"),
        ["unknown transfer syntax"] = (() => Valid().File("1.2.3.4.5"), typeof(NotSupportedException), "transfer syntax '1.2.3.4.5' is not a standard one"),
        ["encapsulated pixels in a native syntax"] = (() => WithLength(Image(w => w.Remove(DicomTag.PixelData).Raw(DicomTag.PixelData, "OB",
            [0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0, 0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0])), DicomTag.PixelData, 0xFFFFFFFF),
            typeof(InvalidDataException), "Pixel Data (7FE0,0010) is encapsulated (undefined length) but the transfer syntax Explicit VR Little Endian"),
        ["unknown VR"] = (() => Image(w => w.Raw(new DicomTag(0x0009, 0x1001), "ZZ", [])), typeof(InvalidDataException),
            "element (0009,1001) at byte 522 has unknown VR 'ZZ'"),
        ["no VR in an explicit syntax"] = (() => Image(w => w.Raw(new DicomTag(0x0009, 0x1001), "\x01\x02", [])), typeof(InvalidDataException),
            "has no explicit VR (bytes 01 02)"),
        ["NumberOfFrames not a number"] = (() => Image(w => Replace(w, DicomTag.NumberOfFrames, "IS", "abc")), typeof(InvalidDataException),
            "NumberOfFrames: 'abc' is not an integer string"),
        ["no frames"] = (() => Image(w => Replace(w, DicomTag.NumberOfFrames, "IS", "0")), typeof(InvalidDataException),
            "NumberOfFrames (0028,0008) is 0, outside 1..2147483647"),
        ["orientation not orthogonal"] = (() => Image(w => Replace(w, DicomTag.ImageOrientationPatient, "DS", "1\\0\\0\\1\\0\\0")),
            typeof(InvalidDataException),
            "Image Orientation Patient (0020,0037) [1, 0, 0, 1, 0, 0] is not two orthogonal directions"),
        ["orientation of five values"] = (() => Image(w => Replace(w, DicomTag.ImageOrientationPatient, "DS", "1\\0\\0\\0\\1")), typeof(InvalidDataException),
            "ImageOrientationPatient has 5 values, not 6"),
        ["zero pixel spacing"] = (() => Image(w => Replace(w, DicomTag.PixelSpacing, "DS", "0\\1")), typeof(InvalidDataException),
            "PixelSpacing [0, 1] is not positive"),
        ["spacing not a number"] = (() => Image(w => Replace(w, DicomTag.PixelSpacing, "DS", "1\\x")), typeof(InvalidDataException),
            "PixelSpacing: '1\\x' is not a decimal string"),
        ["spacing not finite"] = (() => Image(w => Replace(w, DicomTag.PixelSpacing, "DS", "1\\NaN")), typeof(InvalidDataException),
            "PixelSpacing: a value is not finite"),
        ["rescale as a short FD"] = (() => Image(w => w.Raw(DicomTag.RescaleIntercept, "FD", [0, 0, 0, 0])), typeof(InvalidDataException),
            "(0028,1052) RescaleIntercept: 4 bytes of FD are not a whole number of 8-byte values"),
        ["no rows"] = (() => Image(w => w.Remove(DicomTag.Rows)), typeof(InvalidDataException), "no Rows (0028,0010)"),
        ["zero columns"] = (() => Image(w => w.Remove(DicomTag.Columns).UShort(DicomTag.Columns, 0)), typeof(InvalidDataException), "Columns (0028,0011) is 0"),
        ["bits stored above bits allocated"] = (() => Image(w => w.Remove(DicomTag.BitsStored).UShort(DicomTag.BitsStored, 17)), typeof(InvalidDataException),
            "BitsStored (0028,0101) is 17, outside 1..16"),
        ["pixel representation 2"] = (() => Image(w => w.Remove(DicomTag.PixelRepresentation).UShort(DicomTag.PixelRepresentation, 2)),
            typeof(InvalidDataException), "PixelRepresentation (0028,0103) is 2"),
        ["Rows as text"] = (() => Image(w => Replace(w, DicomTag.Rows, "LO", "2")), typeof(InvalidDataException),
            "(0028,0010) Rows: VR LO with 2 bytes is not an integer"),
        ["no pixel data"] = (() => Image(w => w.Remove(DicomTag.PixelData)), typeof(InvalidDataException), "no Pixel Data (7FE0,0010)"),
        // 0x07: a final block of the reserved type 3.
        ["deflate stream corrupt"] = (() => DicomWriter.File([0x07, 0x00, 0x01, 0x02], DicomTransferSyntax.DeflatedExplicitVRLittleEndianUid, compress: false),
            typeof(InvalidDataException), "the deflated dataset is not valid deflate data"),
        ["12 bits allocated"] = (() => Image(w => w.Remove(DicomTag.BitsAllocated).UShort(DicomTag.BitsAllocated,
            12).Remove(DicomTag.BitsStored).UShort(DicomTag.BitsStored, 12)
            .Remove(DicomTag.HighBit).UShort(DicomTag.HighBit, 11)), typeof(NotSupportedException), "Bits Allocated 12 is not supported"),
        ["high bit not the top stored bit"] = (() => Image(w => w.Remove(DicomTag.BitsStored).UShort(DicomTag.BitsStored, 12)), typeof(NotSupportedException),
            "High Bit 15 with Bits Stored 12"),
        ["two samples per pixel"] = (() => Image(w => w.Remove(DicomTag.SamplesPerPixel).UShort(DicomTag.SamplesPerPixel,
            2).UShort(DicomTag.PlanarConfiguration, 0)), typeof(NotSupportedException),
            "MONOCHROME2 with 2 samples per pixel"),
        ["colour without planar configuration"] = (() => DicomWriter.Image(Explicit, 1, 1, [1, 2, 3], bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0,
            photometric: "RGB", samplesPerPixel: 3).File(Explicit),
            typeof(InvalidDataException), "3 samples per pixel but no Planar Configuration"),
    };

    /// <summary>Finds <paramref name="marker"/> and writes <paramref name="value"/> as a uint16 at <paramref name="offset"/> from it, or a uint32 for values
    /// above 0xFFFF.</summary>
    static byte[] Patch(byte[] file, byte[] marker, int offset, uint value)
    {
        int at = file.AsSpan(132).IndexOf(marker) + 132 + offset;
        if (value > 0xFFFF || offset == 4) BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(at), value);
        else BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(at), (ushort)value);
        return file;
    }

    [Theory]
    [MemberData(nameof(Faults))]
    public void FaultIsRefusedNamingTheFile(string fault)
    {
        var (build, type, message) = Cases[fault];
        string path = files.Write("broken.dcm", build());
        var e = Assert.ThrowsAny<Exception>(() => { using var volume = Dicom.Read(path); });
        Assert.True(type == e.GetType(), $"{fault}: {e.GetType().Name}, not {type.Name}: {e.Message}");
        Assert.StartsWith(path + ": ", e.Message);
        Assert.True(e.Message.Contains(message, StringComparison.Ordinal), $"{fault}: \"{message}\" not in: {e.Message}");
    }

    [Fact]
    public void TheValidFileReads()
    {
        // The base every fault above starts from is itself fine.
        using var volume = Dicom.Read(files.Write("valid.dcm", ValidFile()));
        Assert.Equal(new double[] { 1, 2, 3, 4 }, DicomTestFiles.Values(volume.Voxels));
        Assert.Equal(32, Dicom.ReadHeader(files.Write("nested.dcm", Nested(32).File(Explicit))).Elements.Max(e => e.Depth));
    }

    [Fact]
    public void AMissingFileSaysSo()
    {
        string path = files.PathFor("absent.dcm");
        var e = Assert.Throws<FileNotFoundException>(() => Dicom.Read(path));
        Assert.StartsWith(path, e.Message);
    }
}
