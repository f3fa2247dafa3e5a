using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// pydicom's own test files, read here and compared with what pydicom 2.3 and numpy give for them: shape,
/// <c>pixel_array * RescaleSlope + RescaleIntercept</c> statistics, spacing, the number of elements
/// <c>Dataset.iterall()</c> walks, the deepest sequence nesting, and the sampled voxels and sums below. All of them are
/// the output of <c>/usr/bin/python3 tests/reference/dicom_reference.py</c> (Debian's python3-pydicom 2.3), kept here;
/// the dtypes are ours (pydicom's uint32 dose is our Int64, rescaled CT our Float32), the geometry the files' own tags.
/// </summary>
public sealed class DicomReferenceTests
{
    public static TheoryData<string, long[], string, double, double, double, double, double[]> Images => new()
    {
        // file, shape, dtype, min, max, mean, sum, spacing
        { "CT_small.dcm", [128, 128], "Float32", -896, 1167, -119.0738525390625, -1950906, [0.661468, 0.661468] },
        { "MR_small.dcm", [64, 64], "Int16", 127, 2145, 518.88134765625, 2125338, [0.3125, 0.3125] },
        { "MR_small_implicit.dcm", [64, 64], "Int16", 127, 2145, 518.88134765625, 2125338, [0.3125, 0.3125] },
        { "MR_small_bigendian.dcm", [64, 64], "Int16", 127, 2145, 518.88134765625, 2125338, [0.3125, 0.3125] },
        { "ExplVR_BigEnd.dcm", [3, 60, 80], "Byte", 0, 255, 171.5775, 2470716, [1, 1] },
        { "SC_rgb_small_odd.dcm", [3, 3, 3], "Byte", 52, 176, 128.77777777777777, 3477, [33.333333, 33.333333] },
        { "image_dfl.dcm", [512, 512], "Byte", 0, 255, 127.115966796875, 33322688, [1, 1] },
        { "rtdose.dcm", [15, 10, 10], "Int64", 795000, 1254000, 1013273.3333333334, 1519910000, [5, 10, 10] },
        { "rtdose_expb.dcm", [15, 10, 10], "Int64", 795000, 1254000, 1013273.3333333334, 1519910000, [5, 10, 10] },
        { "liver_1frame.dcm", [512, 512], "Byte", 0, 1, 0.13821792602539062, 36233, [0.810547, 0.810547] },
    };

    [Theory]
    [MemberData(nameof(Images))]
    public void VoxelsMatchPydicom(string name, long[] shape, string dtype, double min, double max, double mean, double sum, double[] spacing)
    {
        using var volume = Dicom.Read(DicomTestFiles.Real(name));
        Assert.Equal(shape, volume.Voxels.shape);
        Assert.Equal(dtype, volume.Voxels.dtype.ToString());
        var stats = DicomTestFiles.Statistics(volume.Voxels);
        Assert.Equal(min, stats.Min);
        Assert.Equal(max, stats.Max);
        Assert.Equal(mean, stats.Mean, 1e-9);
        Assert.Equal(sum, stats.Sum);
        Assert.Equal(spacing, volume.Spacing);
        Assert.Equal("LPS", volume.Frame);
        Assert.Equal(DicomTestFiles.Real(name), volume.SourceFile);
    }

    [Theory]
    [InlineData("CT_small.dcm", 8, 262, 1)]
    [InlineData("MR_small.dcm", 8, 73, 0)]
    [InlineData("MR_small_implicit.dcm", 8, 72, 0)]
    [InlineData("MR_small_bigendian.dcm", 8, 72, 0)]
    [InlineData("ExplVR_BigEnd.dcm", 7, 37, 0)]
    [InlineData("image_dfl.dcm", 8, 29, 0)]
    [InlineData("rtdose.dcm", 6, 51, 3)]
    [InlineData("rtdose_expb.dcm", 7, 51, 3)]
    [InlineData("liver_1frame.dcm", 7, 142, 4)]
    [InlineData("test-SR.dcm", 7, 305, 5)]
    [InlineData("UN_sequence.dcm", 8, 7, 3)]
    [InlineData("priv_SQ.dcm", 7, 2, 0)]
    [InlineData("nested_priv_SQ.dcm", 6, 5, 2)]
    [InlineData("JPEG2000.dcm", 8, 160, 2)]
    public void ElementsMatchPydicom(string name, int meta, int elements, int depth)
    {
        var file = Dicom.ReadHeader(DicomTestFiles.Real(name));
        Assert.Equal(meta, file.MetaCount);
        Assert.Equal(elements, file.Elements.Count - file.MetaCount);
        Assert.Equal(depth, file.Elements.Max(e => e.Depth));
        Assert.All(file.Elements.Take(file.MetaCount), e => Assert.Equal(2, e.Tag.Group));
    }

    [Fact]
    public void CtIsInHounsfieldUnitsWithItsGeometry()
    {
        string path = DicomTestFiles.Real("CT_small.dcm");
        using var volume = Dicom.Read(path);
        Assert.Equal(ScalarType.Float32, volume.Voxels.dtype);
        Assert.Equal("int16", volume.StoredType);
        // pydicom: pixel_array[0, :6] = 175 180 166 143 139 152, intercept -1024.
        Assert.Equal(new double[] { 175 - 1024, 180 - 1024, 166 - 1024, 143 - 1024, 139 - 1024, 152 - 1024 }, DicomTestFiles.Values(volume.Voxels)[..6]);
        double[,] expected =
        {
            { 0.661468, 0, 0, -158.135803 },
            { 0, 0.661468, 0, -179.035797 },
            { 0, 0, 5, -75.699997 },
            { 0, 0, 0, 1 },
        };
        Assert.Equal(expected, volume.Affine);
        var header = volume.Header.ToDictionary(p => p.Key == "Note" ? p.Key + p.Value : p.Key, p => p.Value);
        Assert.Equal("CT", header["Modality"]);
        Assert.Equal("1CT1", header["PatientID"]);
        Assert.Equal("-1024", header["RescaleIntercept"]);
        Assert.Equal("1", header["RescaleSlope"]);
        Assert.Equal("Explicit VR Little Endian (1.2.840.10008.1.2.1)", header["TransferSyntax"]);
        Assert.Equal("-158.135803\\-179.035797\\-75.699997", header["ImagePositionPatient"]);

        var info = Dicom.ReadHeader(path).GetImageInfo();
        Assert.Equal((128, 128, 16, 16, 15, 1, 1), (info.Rows, info.Columns, info.BitsAllocated, info.BitsStored, info.HighBit, info.PixelRepresentation,
            info.SamplesPerPixel));
        Assert.Equal(("MONOCHROME2", 1, 5.0, 5.0, 1), (info.PhotometricInterpretation, info.NumberOfFrames, info.SliceThickness, info.SpacingBetweenSlices,
            info.InstanceNumber));
        Assert.Equal("1.3.6.1.4.1.5962.1.1.1.1.1.20040119072730.12322", info.SOPInstanceUID);
        Assert.Equal("1.3.6.1.4.1.5962.1.3.1.1.20040119072730.12322", info.SeriesInstanceUID);
        Assert.Equal("1.3.6.1.4.1.5962.1.2.1.20040119072730.12322", info.StudyInstanceUID);
        Assert.Equal([0, 0, 1], info.SliceNormal!);
    }

    [Fact]
    public void ImplicitExplicitAndBigEndianReadTheSame()
    {
        using var explicitLittle = Dicom.Read(DicomTestFiles.Real("MR_small.dcm"));
        using var implicitLittle = Dicom.Read(DicomTestFiles.Real("MR_small_implicit.dcm"));
        using var explicitBig = Dicom.Read(DicomTestFiles.Real("MR_small_bigendian.dcm"));
        Assert.True(Same(explicitLittle.Voxels, implicitLittle.Voxels));
        Assert.True(Same(explicitLittle.Voxels, explicitBig.Voxels));
        Assert.Equal(explicitLittle.Affine, explicitBig.Affine);
        Assert.Equal(explicitLittle.Affine, implicitLittle.Affine);
        // pydicom: pixel_array.flat[:6]
        Assert.Equal(new double[] { 905, 1019, 1227, 1259, 761, 404 }, DicomTestFiles.Values(explicitBig.Voxels)[..6]);
    }

    [Fact]
    public void ColourPlanesComeFirst()
    {
        // Planar configuration 1 (big endian), pydicom's per-channel sums of pixel_array.
        using var planes = Dicom.Read(DicomTestFiles.Real("ExplVR_BigEnd.dcm"));
        using var sums = planes.Voxels.to(ScalarType.Float64).sum([1, 2]);
        Assert.Equal(new double[] { 1204602, 1190652, 75462 }, sums.data<double>().ToArray());
        // Planar configuration 0 (interleaved), pydicom's np.moveaxis(pixel_array, -1, 0).
        using var interleaved = Dicom.Read(DicomTestFiles.Real("SC_rgb_small_odd.dcm"));
        Assert.Equal(new double[] { 166, 166, 166, 63, 63, 63, 158, 158, 158, 141, 141, 141, 87, 87, 87, 158, 158, 158, 52, 52, 52, 176, 176, 176, 158, 158,
            158 },
            DicomTestFiles.Values(interleaved.Voxels));
    }

    [Fact]
    public void DoseFramesStepAlongGridFrameOffsets()
    {
        using var dose = Dicom.Read(DicomTestFiles.Real("rtdose.dcm"));
        Assert.Equal("uint32", dose.StoredType);
        // IPP 189.43125 199.43125 -761.87, identity orientation, GridFrameOffsetVector 0, 5, ..., 70.
        double[,] expected =
        {
            { 10, 0, 0, 189.43125 },
            { 0, 10, 0, 199.43125 },
            { 0, 0, 5, -761.87 },
            { 0, 0, 0, 1 },
        };
        Assert.Equal(expected, dose.Affine);
        // pydicom: per-frame sums of the first four frames.
        using var frames = dose.Voxels.sum([1, 2]);
        Assert.Equal(new long[] { 101378000, 101381000, 101378000, 101369000 }, frames.data<long>().ToArray()[..4]);
        Assert.Contains(dose.Header, p => p.Key == "Note" && p.Value.StartsWith("DoseGridScaling", StringComparison.Ordinal));
    }

    [Fact]
    public void SegmentationGeometryComesFromFunctionalGroups()
    {
        using var segmentation = Dicom.Read(DicomTestFiles.Real("liver_1frame.dcm"));
        Assert.Equal("bit", segmentation.StoredType);
        // Shared PixelMeasures 0.810547 mm, SliceThickness 1; first frame's PlanePosition -235.2 -226.8 -128.69.
        Assert.Equal(new[] { 0.810547, 0, 0, -235.2 }, Row(segmentation.Affine, 0));
        Assert.Equal(new[] { 0, 0.810547, 0, -226.8 }, Row(segmentation.Affine, 1));
        Assert.Equal(new[] { 0, 0, 1, -128.69 }, Row(segmentation.Affine, 2));
        // pydicom: rows 145..366 hold the liver; row 145 has 6 pixels set.
        using var rows = segmentation.Voxels.to(ScalarType.Int64).sum(1);
        var perRow = rows.data<long>().ToArray();
        Assert.Equal(145, Array.FindIndex(perRow, n => n > 0));
        Assert.Equal(366, Array.FindLastIndex(perRow, n => n > 0));
        Assert.Equal(6, perRow[145]);
    }

    internal static bool Same(Tensor a, Tensor b)
    {
        if (a.dtype != b.dtype || !a.shape.SequenceEqual(b.shape)) return false;
        using var equal = a.eq(b).all();
        return equal.item<bool>();
    }

    static double[] Row(double[,] matrix, int row) => Enumerable.Range(0, 4).Select(c => matrix[row, c]).ToArray();

    [Theory]
    [InlineData("JPEG2000.dcm", "JPEG 2000 Image Compression (1.2.840.10008.1.2.4.91)")]
    [InlineData("MR_small_jpeg_ls_lossless.dcm", "JPEG-LS Lossless Image Compression (1.2.840.10008.1.2.4.80)")]
    [InlineData("MR_small_RLE.dcm", "RLE Lossless (1.2.840.10008.1.2.5)")]
    [InlineData("JPGExtended.dcm", "JPEG Extended (Process 2 and 4) (1.2.840.10008.1.2.4.51)")]
    [InlineData("SC_rgb_jpeg_dcmtk.dcm", "JPEG Baseline (Process 1) (1.2.840.10008.1.2.4.50)")]
    [InlineData("SC_rgb_jpeg_gdcm.dcm", "JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14 [Selection Value 1]) (1.2.840.10008.1.2.4.70)")]
    public void CompressedSyntaxesAreRefusedByName(string name, string syntax)
    {
        string path = DicomTestFiles.Real(name);
        var e = Assert.Throws<NotSupportedException>(() => Dicom.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(syntax, e.Message);
        // The header of a compressed file still reads, for inspection.
        var file = Dicom.ReadHeader(path);
        Assert.True(file.TransferSyntax.Encapsulated);
        Assert.True(file.PixelData!.IsUndefinedLength);
        Assert.True(file.PixelData.Items >= 2);
    }

    [Theory]
    [InlineData("no_meta.dcm", typeof(InvalidDataException), "no 'DICM'")]
    [InlineData("MR_truncated.dcm", typeof(InvalidDataException), "(7FE0,0010) OW at byte 1488 claims 8192 bytes but only 8130 remain")]
    [InlineData("badVR.dcm", typeof(InvalidDataException), "NumberOfFrames: '1A' is not an integer string")]
    [InlineData("test-SR.dcm", typeof(InvalidDataException), "no Pixel Data")]
    [InlineData("SC_ybr_full_422_uncompressed.dcm", typeof(NotSupportedException), "YBR_FULL_422")]
    public void FaultyOrUnsupportedRealFilesAreRefused(string name, Type type, string fault)
    {
        string path = DicomTestFiles.Real(name);
        var e = Assert.ThrowsAny<Exception>(() => Dicom.Read(path));
        Assert.IsType(type, e);
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains(fault, e.Message);
    }

    [Fact]
    public void DumpListsElementsAsDcmdumpDoes()
    {
        string dump = Dicom.ReadHeader(DicomTestFiles.Real("CT_small.dcm")).Dump();
        Assert.Contains("(0002,0010) UI [1.2.840.10008.1.2.1]  # 20, TransferSyntaxUID", dump);
        Assert.Contains("(0008,0060) CS [CT]  # 2, Modality", dump);
        Assert.Contains("(0028,0030) DS [0.661468\\0.661468]  # 18, PixelSpacing", dump);
        Assert.Contains("(0028,0010) US [128]  # 2, Rows", dump);
        Assert.Contains("(0010,1002) SQ (Sequence with explicit length, 2 items)  # 72, OtherPatientIDsSequence", dump);
        Assert.Contains("  (0010,0020) LO [ABCD1234]  # 8, PatientID", dump);
        Assert.Contains("(0009,1027) SL [862399669]  # 4, (private)", dump);
        Assert.Contains("(7FE0,0010) OW [00af\\00b4\\00a6", dump);
        Assert.Contains("... (32768 bytes)]  # 32768, PixelData", dump);
        // Implicit VR: the dictionary gives the VRs.
        string implicitDump = Dicom.ReadHeader(DicomTestFiles.Real("MR_small_implicit.dcm")).Dump();
        Assert.Contains("(0028,0010) US [64]  # 2, Rows", implicitDump);
        Assert.Contains("(0020,0032) DS [-83.9063\\-91.2000\\6.6406]  # 24, ImagePositionPatient", implicitDump);
        // Sequences of undefined length and the UN sequence (implicit VR inside explicit VR).
        string unDump = Dicom.ReadHeader(DicomTestFiles.Real("UN_sequence.dcm")).Dump();
        Assert.Contains("UN (Sequence with undefined length, 1 item)", unDump);
    }

    [Fact]
    public void DeflatedAndPlainDatasetsListTheSameWay()
    {
        var file = Dicom.ReadHeader(DicomTestFiles.Real("image_dfl.dcm"));
        Assert.True(file.TransferSyntax.Deflated);
        Assert.Equal("OT", file.GetString(DicomTag.Modality));
        Assert.Equal(512L, file.GetInteger(DicomTag.Rows));
        Assert.Equal(262144, file.PixelData!.Length);
    }
}
