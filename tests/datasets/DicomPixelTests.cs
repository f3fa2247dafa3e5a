using Medformer.Datasets.Formats;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Native pixel data as pydicom reads it (numpy_handler, with pydicom 3's masking of BitsStored): widths, signedness,
/// bits above BitsStored, byte orders, frames, colour layouts and the rescale, on files written by <see cref="DicomWriter"/>.
/// </summary>
public sealed class DicomPixelTests : IDisposable
{
    const string Explicit = DicomTransferSyntax.ExplicitVRLittleEndianUid;
    readonly DicomTestFiles files = new();

    public void Dispose() => files.Dispose();

    MedicalVolume Read(DicomWriter writer, string syntax = Explicit, string name = "image.dcm") => Dicom.Read(files.Write(name, writer.File(syntax)));

    static double[] Values(MedicalVolume volume) => DicomTestFiles.Values(volume.Voxels);

    [Theory]
    // bits allocated, stored, signed, raw samples, values, dtype
    [InlineData(16, 12, 0, new long[] { 0xFFFF, 0x3800, 5, 0xA123 }, new double[] { 4095, 2048, 5, 0x123 }, ScalarType.Int16)]
    [InlineData(16, 12, 1, new long[] { 0x0FFF, 0x0800, 0x07FF, 0xF001 }, new double[] { -1, -2048, 2047, 1 }, ScalarType.Int16)]
    [InlineData(16, 16, 0, new long[] { 65535, 0, 32768, 1 }, new double[] { 65535, 0, 32768, 1 }, ScalarType.Int32)]
    [InlineData(16, 16, 1, new long[] { 0xFFFF, 0x8000, 0x7FFF, 1 }, new double[] { -1, -32768, 32767, 1 }, ScalarType.Int16)]
    [InlineData(32, 32, 0, new long[] { 0xFFFFFFFF, 0, 0x80000000, 7 }, new double[] { 4294967295, 0, 2147483648, 7 }, ScalarType.Int64)]
    [InlineData(32, 20, 1, new long[] { 0x000FFFFF, 0xFFF80000, 0x0007FFFF, 0x12300001 }, new double[] { -1, -524288, 524287, 1 }, ScalarType.Int32)]
    [InlineData(32, 31, 0, new long[] { 0xFFFFFFFF, 0x7FFFFFFF, 0x80000001, 0 }, new double[] { 0x7FFFFFFF, 0x7FFFFFFF, 1, 0 }, ScalarType.Int32)]
    [InlineData(8, 8, 1, new long[] { 0x80, 0x7F, 0xFF, 0 }, new double[] { -128, 127, -1, 0 }, ScalarType.Int8)]
    [InlineData(8, 6, 0, new long[] { 0xFF, 0x40, 0x3F, 0x81 }, new double[] { 63, 0, 63, 1 }, ScalarType.Byte)]
    [InlineData(8, 4, 1, new long[] { 0x0F, 0x08, 0xF7, 0x10 }, new double[] { -1, -8, 7, 0 }, ScalarType.Int8)]
    public void SamplesAreMaskedToBitsStoredAndSignExtended(int bitsAllocated, int bitsStored, int signed, long[] raw, double[] expected, ScalarType dtype)
    {
        foreach (string syntax in new[] { Explicit, DicomTransferSyntax.ImplicitVRLittleEndianUid, DicomTransferSyntax.ExplicitVRBigEndianUid,
            DicomTransferSyntax.DeflatedExplicitVRLittleEndianUid })
        {
            using var volume = Read(DicomWriter.Image(syntax, 2, 2, raw, bitsAllocated: bitsAllocated, bitsStored: bitsStored, pixelRepresentation: signed),
                syntax);
            Assert.Equal(dtype, volume.Voxels.dtype);
            Assert.Equal(new long[] { 2, 2 }, volume.Voxels.shape);
            Assert.Equal(expected, Values(volume));
            Assert.Equal($"{(signed == 1 ? "int" : "uint")}{bitsAllocated}", volume.StoredType);
        }
    }

    [Fact]
    public void RescaleGivesFloat32OnlyWhenItChangesValues()
    {
        long[] raw = [0, 1, 1000, 0xFC00];  // 0xFC00 is -1024 as int16
        using (var identity = Read(DicomWriter.Image(Explicit, 2, 2, raw, slope: 1, intercept: 0)))
        {
            Assert.Equal(ScalarType.Int16, identity.Voxels.dtype);
            Assert.Equal(new double[] { 0, 1, 1000, -1024 }, Values(identity));
        }
        using (var hounsfield = Read(DicomWriter.Image(Explicit, 2, 2, raw, slope: 1, intercept: -1024)))
        {
            Assert.Equal(ScalarType.Float32, hounsfield.Voxels.dtype);
            Assert.Equal(new double[] { -1024, -1023, -24, -2048 }, Values(hounsfield));
        }
        using var scaled = Read(DicomWriter.Image(Explicit, 2, 2, raw, slope: 0.5, intercept: 10));
        Assert.Equal(new double[] { 10, 10.5, 510, -502 }, Values(scaled));
        Assert.Contains(new KeyValuePair<string, string>("RescaleSlope", "0.5"), scaled.Header);
    }

    [Fact]
    public void FramesComeFirst()
    {
        long[] raw = [.. Enumerable.Range(0, 3 * 2 * 4).Select(i => (long)i)];
        using var volume = Read(DicomWriter.Image(Explicit, 2, 4, raw, frames: 3, spacing: [0.5, 0.25], thickness: 3));
        Assert.Equal(new long[] { 3, 2, 4 }, volume.Voxels.shape);
        Assert.Equal(raw.Select(v => (double)v), Values(volume));
        Assert.Equal(new double[] { 3, 0.5, 0.25 }, volume.Spacing);
        using var second = volume.Voxels[1, 0, 3];
        Assert.Equal(11, second.item<short>());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EnhancedFramesTakeTheirGeometryFromFunctionalGroups(bool uneven)
    {
        // Shared: pixel spacing 0.5 × 0.25 and a coronal orientation; per frame: positions 2 mm apart along the normal (0, -1, 0)... or not.
        double[][] positions = [[10, 20, 30], [10, 18, 30], [10, uneven ? 15 : 16, 30]];
        var shared = new DicomWriter()
            .Seq(DicomTag.PlaneOrientationSequence, false, false, new DicomWriter().Decimals(DicomTag.ImageOrientationPatient, 1, 0, 0, 0, 0, -1))
            .Seq(DicomTag.PixelMeasuresSequence, true, false, new DicomWriter().Decimals(DicomTag.SliceThickness, 2).Decimals(DicomTag.PixelSpacing, 0.5,
                0.25));
        var perFrame = positions.Select(p => new DicomWriter().Seq(DicomTag.PlanePositionSequence, false, true,
            new DicomWriter().Decimals(DicomTag.ImagePositionPatient, p))).ToArray();
        var writer = DicomWriter.Image(Explicit, 2, 2, new long[12], frames: 3)
            .Remove(DicomTag.PixelData)
            .Seq(DicomTag.SharedFunctionalGroupsSequence, true, true, shared)
            .Seq(DicomTag.PerFrameFunctionalGroupsSequence, false, false, perFrame)
            .Pixels(new long[12], 2);
        using var volume = Read(writer);
        Assert.Equal(new long[] { 3, 2, 2 }, volume.Voxels.shape);
        Assert.Equal(new double[] { uneven ? 2.5 : 2, 0.5, 0.25 }, volume.Spacing);
        Assert.Equal(new double[,] { { 0.25, 0, 0, 10 }, { 0, 0, uneven ? -2.5 : -2, 20 }, { 0, -0.5, 0, 30 }, { 0, 0, 0, 1 } }, volume.Affine);
        Assert.Equal(uneven, volume.Header.Any(p => p.Value.StartsWith("frames are not evenly spaced", StringComparison.Ordinal)));
    }

    [Fact]
    public void ColourPlanesComeFirstWhateverThePlanarConfiguration()
    {
        // 2 frames of 2×3 RGB: channel c of pixel p in frame f is 100·c + 10·f + p.
        int frames = 2, pixels = 6;
        long Sample(int f, int p, int c) => 100 * c + 10 * f + p;
        long[] interleaved = [.. from f in Enumerable.Range(0, frames) from p in Enumerable.Range(0, pixels) from c in Enumerable.Range(0, 3) select Sample(f,
            p, c)];
        long[] planes = [.. from f in Enumerable.Range(0, frames) from c in Enumerable.Range(0, 3) from p in Enumerable.Range(0, pixels) select Sample(f, p,
            c)];
        double[] expected = [.. from c in Enumerable.Range(0, 3) from f in Enumerable.Range(0, frames) from p in Enumerable.Range(0,
            pixels) select (double)Sample(f, p, c)];
        foreach (var (samples, planar) in new[] { (interleaved, 0), (planes, 1) })
        {
            using var volume = Read(DicomWriter.Image(Explicit, 2, 3, samples, frames: frames, bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0,
                photometric: "RGB", samplesPerPixel: 3, planar: planar));
            Assert.Equal(new long[] { 3, 2, 2, 3 }, volume.Voxels.shape);
            Assert.Equal(expected, Values(volume));
        }
        using var single = Read(DicomWriter.Image(Explicit, 2, 3, interleaved[..18], bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0,
            photometric: "RGB", samplesPerPixel: 3, planar: 0));
        Assert.Equal(new long[] { 3, 2, 3 }, single.Voxels.shape);
    }

    [Fact]
    public void OneBitFramesArePackedWithoutPadding()
    {
        // 2 frames of 3×3 = 18 bits, the first pixel in the lowest bit; frame 1 starts at bit 9, inside the second byte.
        int[] bits = [1, 0, 0, 1, 1, 0, 0, 0, 1, /* frame 1 */ 0, 1, 1, 1, 0, 0, 0, 0, 1];
        var packed = new byte[4];
        for (int i = 0; i < bits.Length; i++) packed[i >> 3] |= (byte)(bits[i] << (i & 7));
        var writer = DicomWriter.Image(Explicit, 3, 3, [], frames: 2, bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0)
            .Remove(DicomTag.PixelData).Remove(DicomTag.BitsAllocated).Remove(DicomTag.BitsStored).Remove(DicomTag.HighBit).Remove(DicomTag.PixelRepresentation)
            .UShort(DicomTag.BitsAllocated, 1).UShort(DicomTag.BitsStored, 1).UShort(DicomTag.HighBit, 0).UShort(DicomTag.PixelRepresentation, 0)
            .Raw(DicomTag.PixelData, "OB", packed);
        using var volume = Read(writer);
        Assert.Equal(new long[] { 2, 3, 3 }, volume.Voxels.shape);
        Assert.Equal(ScalarType.Byte, volume.Voxels.dtype);
        Assert.Equal(bits.Select(b => (double)b), Values(volume));
    }

    [Fact]
    public void PaddingAfterThePixelsIsIgnored()
    {
        // 3×3 bytes are written with a padding byte to even length; a longer element holds trailing bytes.
        using var odd = Read(DicomWriter.Image(Explicit, 3, 3, [.. Enumerable.Range(1, 9).Select(i => (long)i)], bitsAllocated: 8, bitsStored: 8,
            pixelRepresentation: 0));
        Assert.Equal(Enumerable.Range(1, 9).Select(i => (double)i), Values(odd));
        using var longer = Read(DicomWriter.Image(Explicit, 2, 2, [1, 2, 3, 4, 99, 99]));
        Assert.Equal(new double[] { 1, 2, 3, 4 }, Values(longer));
    }

    [Theory]
    [InlineData("MONOCHROME1", 1, "higher values display darker")]
    [InlineData("PALETTE COLOR", 1, "palette indices")]
    [InlineData("YBR_FULL", 3, "Y, Cb, Cr")]
    public void PhotometricInterpretationsAreNoted(string photometric, int samples, string note)
    {
        using var volume = Read(DicomWriter.Image(Explicit, 2, 2, new long[4 * samples], bitsAllocated: 8, bitsStored: 8, pixelRepresentation: 0,
            photometric: photometric, samplesPerPixel: samples, planar: samples == 3 ? 0 : null));
        Assert.Contains(new KeyValuePair<string, string>("PhotometricInterpretation", photometric), volume.Header);
        Assert.Contains(volume.Header, p => p.Key == "Note" && p.Value.Contains(note));
    }

    [Fact]
    public void MissingGeometryIsAssumedAndSaid()
    {
        using var volume = Read(DicomWriter.Image(Explicit, 2, 2, [1, 2, 3, 4]));
        Assert.Equal(new double[] { 1, 1 }, volume.Spacing);
        Assert.Equal(new double[,] { { 1, 0, 0, 0 }, { 0, 1, 0, 0 }, { 0, 0, 1, 0 }, { 0, 0, 0, 1 } }, volume.Affine);
        Assert.Contains(volume.Header, p => p.Value == "PixelSpacing absent: 1 mm assumed");
        Assert.Contains(volume.Header, p => p.Value.StartsWith("ImageOrientationPatient absent", StringComparison.Ordinal));
        Assert.Contains(volume.Header, p => p.Value.StartsWith("ImagePositionPatient absent", StringComparison.Ordinal));
    }

    [Fact]
    public void ReadingFromMemoryEqualsReadingTheFile()
    {
        var bytes = File.ReadAllBytes(DicomTestFiles.Real("CT_small.dcm"));
        using var fromMemory = Dicom.Read(bytes, "memory:CT_small");
        using var fromFile = Dicom.Read(DicomTestFiles.Real("CT_small.dcm"));
        Assert.True(DicomReferenceTests.Same(fromFile.Voxels, fromMemory.Voxels));
        Assert.Equal("memory:CT_small", fromMemory.SourceFile);
    }
}
