using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static Medformer.Tests.Datasets.NiftiTestFiles;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Real files (nibabel's test data, and small files nibabel 5.0 wrote with tests/reference/nifti_reference.py make)
/// read as nibabel reads them: shape, dtype, spacing, best affine, voxel statistics and samples, with the numbers
/// nibabel gave (nifti_reference.py describe) kept here.
/// </summary>
public sealed class NiftiReaderTests : IDisposable
{
    readonly NiftiTestFiles files = new();

    public void Dispose() => files.Dispose();

    /// <summary>What nibabel reads. Samples index the tensor flattened in our layout ([..., z, y, x], C order).</summary>
    public sealed record Expected(
        long[] Shape, ScalarType Dtype, double[] Spacing, double[,] Affine,
        double Min, double Max, double Mean, double Sum, (long Index, double Value)[] Samples, string StoredType);

    static readonly double[,] Diag123 = Rows([1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 3, 0]);
    static readonly double[,] Identity = Rows([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]);
    static readonly double[,] PairAffine = Rows([0, 0, 2, -5], [1.5, 0, 0, 7], [0, 1.25, 0, -9]);

    static readonly Dictionary<string, Expected> Reference = new()
    {
        ["nibabel/anatomical.nii"] = new([25, 41, 33], ScalarType.Int16, [2, 2, 2],
            Rows([-2, 0, 0, 32], [0, 2, 0, -40], [0, 0, 2, -16]),
            -610, 30393, 8401.066725794532, 284166082,
            [(0, 10712), (1, 10463), (11275, 11347), (16912, 11881), (22550, 6326), (33824, 2971)], "int16"),
        ["nibabel/functional.nii"] = new([20, 3, 21, 17], ScalarType.Float32, [8, 4, 4],
            Rows([-4, 0, 0, 32], [0, 4, 0, -40], [0, 0, 8, 0]),
            629.826171875, 5571.621858656406, 3637.408513675239, 77913290.36292362,
            [(0, 4004.137202501297), (1, 4143.715501368046), (7140, 3669.9335176944733), (10710, 3989.6590645313263),
             (14280, 3640.8264278173447), (21419, 3129.3409598469734)], "int16"),
        ["nibabel/example_nifti2.nii.gz"] = new([2, 12, 20, 32], ScalarType.Int16, [2.1999990940093994, 2, 2],
            Rows([-2.0, 6.714715653593746e-19, 9.081024511081715e-18, 117.8551025390625],
                 [-6.714715653593746e-19, 1.9737114906311035, -0.35552823543548584, -35.72294235229492],
                 [8.25548088896093e-18, 0.3232076168060303, 2.171081781387329, -7.248798370361328]),
            46, 757, 450.963671875, 6926802,
            [(0, 424), (1, 428), (5120, 500), (7680, 439), (10240, 446), (15359, 457)], "int16"),
        ["nibabel/standard.nii.gz"] = new([7, 5, 4], ScalarType.Byte, [2, 3, 1],
            Rows([1, 0, 0, 0], [0, 3, 0, 0], [0, 0, 2, 0]),
            0, 255, 54.642857142857146, 7650,
            [(0, 0), (1, 255), (46, 0), (70, 0), (93, 0), (139, 255)], "uint8"),
        ["nibabel/reoriented_anat_moved.nii"] = new([22, 26, 21], ScalarType.Float32, [4, 4, 4],
            Rows([4, 0, 0, -35.29789733886719], [0, 4, 0, -47.97758483886719], [0, 0, 4, -27.599409103393555]),
            0, 21199.935546875, 2725.588532230912, 32739769.449157715,
            [(0, 0), (1, 0), (4004, 9000.8896484375), (6006, 0), (8008, 10514.9931640625), (12011, 0)], "float32"),
        ["nifti/be_nifti2_qform.nii"] = new([3, 4, 5], ScalarType.Float32, [2.5, 2, 1.5],
            Rows([1.433004733688409, -0.5910404133226791, 0.0, 10.0], [0.44328030999200935, 1.910672978251212, 0.0, -20.0], [0, 0, -2.5, 30]),
            -500.5, 472, 20.058333333333334, 1203.5,
            [(0, 109.5), (1, 448.5), (20, -252.5), (30, -324), (40, 469.5), (59, -284)], "int32"),
        ["nifti/dtype_rgb24.nii"] = new([3, 2, 3, 4], ScalarType.Byte, [1, 1, 1], Identity,
            1, 252, 117.04166666666667, 8427,
            [(0, 69), (1, 29), (24, 252), (36, 127), (48, 149), (71, 202)], "rgb24"),
        ["nifti/dtype_uint8.nii.gz"] = new([2, 3, 4], ScalarType.Byte, [3, 2, 1], Diag123,
            0, 255, 127.04166666666667, 3049,
            [(0, 0), (1, 66), (8, 44), (12, 11), (16, 33), (23, 255)], "uint8"),
        ["nifti/dtype_int8.nii.gz"] = new([2, 3, 4], ScalarType.Int8, [3, 2, 1], Diag123,
            -128, 127, -0.5, -12,
            [(0, -128), (1, -61), (8, -83), (12, -116), (16, -94), (23, 127)], "int8"),
        ["nifti/dtype_int16.nii.gz"] = new([2, 3, 4], ScalarType.Int16, [3, 2, 1], Diag123,
            -32768, 32767, -0.5, -12,
            [(0, -32768), (1, -15671), (8, -21370), (12, -29918), (16, -24219), (23, 32767)], "int16"),
        ["nifti/dtype_uint16.nii.gz"] = new([2, 3, 4], ScalarType.Int32, [3, 2, 1], Diag123,
            0, 65535, 32767.041666666668, 786409,
            [(0, 0), (1, 17096), (8, 11397), (12, 2849), (16, 8548), (23, 65535)], "uint16"),
        ["nifti/dtype_int32.nii.gz"] = new([2, 3, 4], ScalarType.Int32, [3, 2, 1], Diag123,
            -2147483648, 2147483647, -0.5, -12,
            [(0, -2147483648), (1, -1027057397), (8, -1400532814), (12, -1960745939), (16, -1587270522), (23, 2147483647)], "int32"),
        ["nifti/dtype_uint32.nii.gz"] = new([2, 3, 4], ScalarType.Int64, [3, 2, 1], Diag123,
            0, 4294967295, 2147483647.0416667, 51539607529,
            [(0, 0), (1, 1120426250), (8, 746950833), (12, 186737708), (16, 560213125), (23, 4294967295)], "uint32"),
        ["nifti/dtype_float32.nii.gz"] = new([2, 3, 4], ScalarType.Float32, [3, 2, 1], Diag123,
            -1883.4637451171875, 2254.5390625, 184.0685709019502, 4417.645701646805,
            [(0, 1231.351806640625), (1, 185.86090087890625), (8, 1096.7965087890625), (12, 1621.804443359375),
             (16, 1165.462890625), (23, -1095.20166015625)], "float32"),
        ["nifti/dtype_float64.nii.gz"] = new([2, 3, 4], ScalarType.Float64, [3, 2, 1], Diag123,
            -1930.2874975259847, 1819.6918381290936, -11.52462701904498, -276.5910484570795,
            [(0, 823.5621286156919), (1, 191.45583053805643), (8, -144.2421188489701), (12, -625.5664702584506),
             (16, -1350.8471418657898), (23, -544.1134150640868)], "float64"),
        ["nifti/extension.nii"] = new([3, 3, 3], ScalarType.Int16, [1, 1, 1], Identity,
            0, 98, 52.666666666666664, 1422,
            [(0, 72), (1, 48), (9, 10), (13, 77), (18, 54), (26, 33)], "int16"),
        ["nifti/noxform.nii"] = new([3, 4, 5], ScalarType.Int16, [2.5, 2, 1.5],
            Rows([-1.5, 0, 0, 3], [0, 2, 0, -3], [0, 0, 2.5, -2.5]),
            -49, 46, -3.2666666666666666, -196,
            [(0, -16), (1, 16), (20, 6), (30, -2), (40, 18), (59, 12)], "int16"),
        ["nifti/slice2d.nii"] = new([5, 6], ScalarType.Byte, [0.8999999761581421, 0.800000011920929],
            Rows([0.800000011920929, 0, 0, 0], [0, 0.8999999761581421, 0, 0], [0, 0, 1, 0]),
            14, 246, 156.9, 4707,
            [(0, 56), (1, 224), (10, 193), (15, 53), (20, 161), (29, 241)], "uint8"),
        ["nifti/vector5d.nii.gz"] = new([3, 1, 2, 4, 3], ScalarType.Float32, [1, 0.75, 0.5],
            Rows([0.5, 0, 0, 0], [0, 0.75, 0, 0], [0, 0, 1, 0]),
            -2.380427598953247, 2.729684352874756, 0.12030655888762946, 8.662072239909321,
            [(0, 0.6965295672416687), (1, 1.0500785112380981), (24, -0.8602482080459595), (36, 1.1509461402893066),
             (48, 0.2088879495859146), (71, -0.5569902062416077)], "float32"),
        ["nifti/pair.hdr"] = new([2, 5, 4, 3], ScalarType.Float32, [2, 1.25, 1.5], PairAffine,
            -2.381474494934082, 2.088918447494507, 0.013344321097247303, 1.6013185316696763,
            [(0, 0.6582976579666138), (1, -2.381474494934082), (40, -0.21916602551937103), (60, 0.25645434856414795),
             (80, -0.5112422704696655), (119, 1.5145556926727295)], "float32"),
        ["nifti/pair_gz.hdr.gz"] = new([2, 5, 4, 3], ScalarType.Float32, [2, 1.25, 1.5], PairAffine,
            -4.762948989868164, 4.177836894989014, 0.026688642194494606, 3.2026370633393526,
            [(0, 1.3165953159332275), (1, -4.762948989868164), (40, -0.43833205103874207), (60, 0.5129086971282959),
             (80, -1.022484540939331), (119, 3.029111385345459)], "float32"),
    };

    public static TheoryData<string> Files => [.. Reference.Keys];

    [Theory]
    [MemberData(nameof(Files))]
    public void ReadsAsNibabelDoes(string name) => Check(Data(name), Reference[name]);

    [Theory]
    [InlineData("nifti/pair.img", "nifti/pair.hdr")]
    [InlineData("nifti/pair_gz.img.gz", "nifti/pair_gz.hdr.gz")]
    public void EitherNameOfAPairFindsTheOther(string name, string reference) => Check(Data(name), Reference[reference]);

    [Fact]
    public void GzipIsRecognisedByItsMagicNotItsName()
    {
        string copy = files.PathFor("example_nifti2_without_gz_suffix.nii");
        File.Copy(Data("nibabel/example_nifti2.nii.gz"), copy);
        Check(copy, Reference["nibabel/example_nifti2.nii.gz"]);
    }

    [Fact]
    public void MultiMemberGzipReads()
    {
        // bgzip and pigz write several gzip members back to back; the header and the voxels may straddle them.
        byte[] plain = Plain(Data("nibabel/example_nifti2.nii.gz"));
        string path = files.PathFor("members.nii.gz");
        File.WriteAllBytes(path, [.. Gzip(plain[..300]), .. Gzip(plain[300..5000]), .. Gzip(plain[5000..])]);
        Check(path, Reference["nibabel/example_nifti2.nii.gz"]);
    }

    static void Check(string path, Expected expected)
    {
        using var volume = NiftiReader.Read(path);
        var voxels = volume.Voxels;
        Assert.Equal(expected.Shape, voxels.shape);
        Assert.Equal(expected.Dtype, voxels.dtype);
        Assert.Equal(expected.StoredType, volume.StoredType);
        Assert.Equal(path, volume.SourceFile);
        Assert.Equal("RAS", volume.Frame);
        Assert.Equal(expected.Spacing.Length, volume.Spacing.Length);
        for (int i = 0; i < expected.Spacing.Length; i++) Assert.Equal(expected.Spacing[i], volume.Spacing[i], 6);
        AssertAffine(expected.Affine, volume.Affine, 1e-6);

        // Values: integer types exactly; scaled and float32 data to float32's precision.
        double[] values = Values(voxels);
        double scale = values.Max(Math.Abs), tolerance = voxels.dtype is ScalarType.Float32 ? 2e-7 * scale : 0;
        if (voxels.is_floating_point())
        {
            foreach (var (index, value) in expected.Samples)
                Assert.True(Math.Abs(values[index] - value) <= tolerance, $"[{index}]: expected {value}, got {values[index]}");
        }
        else
        {
            long[] longs = Longs(voxels);
            foreach (var (index, value) in expected.Samples)
                Assert.Equal((long)(decimal)value, longs[index]);
        }
        Assert.Equal(expected.Min, values.Min(), tolerance);
        Assert.Equal(expected.Max, values.Max(), tolerance);
        double sumTolerance = values.Length * (tolerance + 1e-15 * scale);
        Assert.True(Math.Abs(expected.Sum - values.Sum()) <= sumTolerance, $"sum: expected {expected.Sum}, got {values.Sum()}");
        Assert.True(Math.Abs(expected.Mean - values.Average()) <= sumTolerance / values.Length, $"mean: expected {expected.Mean}, got {values.Average()}");
    }

    [Fact]
    public void Int64AndUInt64AreExact()
    {
        using (var volume = NiftiReader.Read(Data("nifti/dtype_int64.nii.gz")))
        {
            Assert.Equal(ScalarType.Int64, volume.Voxels.dtype);
            long[] values = Longs(volume.Voxels);
            Assert.Equal(long.MinValue, values[0]);
            Assert.Equal(-4411177930669675520, values[1]);
            Assert.Equal(-6015242632731375616, values[8]);
            Assert.Equal(-8421339685823926272, values[12]);
            Assert.Equal(-6817274983762225152, values[16]);
            Assert.Equal(long.MaxValue, values[23]);
        }
        using (var volume = NiftiReader.Read(Data("nifti/dtype_uint64.nii.gz")))
        {
            Assert.Equal(ScalarType.Int64, volume.Voxels.dtype);
            Assert.Equal("uint64", volume.StoredType);
            long[] values = Longs(volume.Voxels);
            Assert.Equal(0, values[0]);
            Assert.Equal(2406097053092550144, values[1]);
            Assert.Equal(1604064702061700096, values[8]);
            Assert.Equal(401016175515425024, values[12]);
            Assert.Equal(1203048526546275072, values[16]);
            Assert.Equal(long.MaxValue, values[23]);
        }
    }

    [Fact]
    public void QformFollowsTheStandardsQuaternionFormula()
    {
        // example_nifti2's quaternion has b² + c² + d² = 1 - 1e-9: the standard reads that as a 180° rotation (a = 0),
        // and so gets back FSL's sform; nibabel's get_qform takes a = sqrt(1e-9), tilting the axes by 1e-5.
        var example = NiftiReader.ReadHeader(Data("nibabel/example_nifti2.nii.gz"));
        AssertAffine(example.SformAffine, example.QformAffine, 1e-6);
        AssertAffine(Rows(
            [-1.999999995978187, 1.0282396754185892e-05, 0.00013905980362440367, 117.8551025390625],
            [-1.0282396754185892e-05, 1.9737114380364735, -0.3555282247524397, -35.72294235229492],
            [0.00012641805535562603, 0.32320761014906196, 2.1710816833341227, -7.248798370361328]), example.QformAffine, 2e-4);
        Assert.Equal("sform", example.BestAffineSource);
        Assert.Equal(-1, example.Qfac);

        // A rotation about z with qfac -1, in a big-endian NIfTI-2 whose only transform is the qform: nibabel's numbers.
        var rotated = NiftiReader.ReadHeader(Data("nifti/be_nifti2_qform.nii"));
        Assert.True(rotated.BigEndian);
        Assert.Equal(2, rotated.Version);
        Assert.Equal(1, rotated.QformCode);
        Assert.Equal(0, rotated.SformCode);
        Assert.Equal("qform", rotated.BestAffineSource);
        Assert.Equal((0.5, -3.0), rotated.Scaling);
        AssertAffine(Rows([1.433004733688409, -0.5910404133226791, 0.0, 10.0], [0.44328030999200935, 1.910672978251212, 0.0, -20.0], [0, 0, -2.5, 30]),
            rotated.QformAffine, 1e-9);
    }

    [Fact]
    public void HeaderOnlyReadsOfNibabelsHeaders()
    {
        var nifti1 = NiftiReader.ReadHeader(Data("nibabel/nifti1.hdr"));
        var nifti2 = NiftiReader.ReadHeader(Data("nibabel/nifti2.hdr"));
        var expected = Rows([-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72]);
        foreach (var header in new[] { nifti1, nifti2 })
        {
            Assert.False(header.BigEndian);
            Assert.Equal([91L, 109, 91], header.Shape);
            Assert.Equal(NiftiDatatype.Int16, header.DataType);
            Assert.Equal([2.0, 2, 2], header.Zooms);
            Assert.Equal(4, header.QformCode);
            Assert.Equal(4, header.SformCode);
            Assert.Equal("FSL4.0", header.Descrip);
            Assert.Equal(9968, header.CalMax);
            Assert.Equal(10, header.XyztUnits);
            AssertAffine(expected, header.BestAffine, 1e-9);
            AssertAffine(expected, header.QformAffine, 1e-9);
        }
        Assert.Equal((1, "ni1", 0.0), (nifti1.Version, nifti1.Magic, nifti1.VoxOffset));
        Assert.Equal((2, "ni2", 544.0), (nifti2.Version, nifti2.Magic, nifti2.VoxOffset));

        // Analyze 7.5 as nibabel reads it (Spm2AnalyzeImage): big endian, the affine from pixdim and SPM's origin.
        var analyze = NiftiReader.ReadHeader(Data("nibabel/analyze.hdr"));
        Assert.Equal(0, analyze.Version);
        Assert.Equal("Analyze 7.5", analyze.Format);
        Assert.True(analyze.BigEndian);
        Assert.Equal([91L, 109, 91, 1], analyze.Shape);
        Assert.Equal(NiftiDatatype.UInt8, analyze.DataType);
        Assert.Equal([46, 64, 37], analyze.SpmOrigin);
        Assert.Equal("ICBM AVG 152 T1 TAL LIN", analyze.Descrip);
        Assert.Equal("pixdim and SPM origin", analyze.BestAffineSource);
        AssertAffine(expected, analyze.BestAffine, 1e-9);
        Assert.Equal((1715.0445556640625, 0.0), analyze.Scaling);  // SPM's scale factor, which nibabel applies too
    }

    /// <summary>nibabel's headers with image files made here: a pattern whose every voxel is checked in place.</summary>
    [Theory]
    [InlineData("analyze.hdr", "analyze.img")]
    [InlineData("nifti1.hdr", "nifti1.img.gz")]
    [InlineData("nifti2.hdr", "nifti2.img")]
    public void PairsWithNibabelsHeaders(string headerName, string imageName)
    {
        string header = files.PathFor(headerName);
        File.Copy(Data("nibabel/" + headerName), header);
        var parsed = NiftiReader.ReadHeader(header);
        long count = parsed.VoxelCount, offset = (long)parsed.VoxOffset;
        int size = parsed.DataType.BytesPerVoxel;
        var image = new byte[offset + count * size];
        for (long i = 0; i < count; i++)
        {
            long value = Pattern(i, size);
            if (size == 1) image[offset + i] = (byte)value;
            else if (parsed.BigEndian) PutI16(image, (int)(offset + 2 * i), value, bigEndian: true);
            else PutI16(image, (int)(offset + 2 * i), value);
        }
        files.Write(imageName, image);

        using var volume = NiftiReader.Read(header);
        long[] expectedShape = [.. parsed.Shape.Reverse()];
        Assert.Equal(expectedShape, volume.Voxels.shape);
        Assert.Equal([2.0, 2, 2], volume.Spacing);
        AssertAffine(Rows([-2, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72]), volume.Affine, 1e-9);
        // analyze.hdr carries SPM's scale factor: float32 voxels, as nibabel gives them.
        double slope = parsed.Scaling?.Slope ?? 1;
        Assert.Equal(parsed.Scaling is null ? parsed.DataType.Storage : ScalarType.Float32, volume.Voxels.dtype);
        double[] values = Values(volume.Voxels);
        for (long i = 0; i < count; i++)
            if (values[i] != (float)(Pattern(i, size) * slope)) Assert.Fail($"voxel {i}: expected {Pattern(i, size) * slope}, got {values[i]}");

        // The image's own name finds the header too.
        using var again = NiftiReader.Read(files.PathFor(imageName));
        Assert.Equal(expectedShape, again.Voxels.shape);
    }

    static long Pattern(long i, int size) => size == 1 ? i * 7 % 256 : i * 31 % 65536 - 32768;

    [Fact]
    public void ExtensionsAreListed()
    {
        var header = NiftiReader.ReadHeader(Data("nifti/extension.nii"));
        var extension = Assert.Single(header.Extensions);
        Assert.Equal(6, extension.Code);
        Assert.Equal("comment", extension.Name);
        Assert.Equal(48, extension.Size);  // 8 + "made by nifti_reference.py", padded to 16
        Assert.Equal(400, header.VoxOffset);
        Assert.Empty(NiftiReader.ReadHeader(Data("nibabel/anatomical.nii")).Extensions);
    }

    [Fact]
    public void HeaderTextListsTheFields()
    {
        using var volume = NiftiReader.Read(Data("nibabel/functional.nii"));
        var header = volume.Header.ToDictionary(p => p.Key, p => p.Value);
        Assert.Equal(Data("nibabel/functional.nii"), header["file"]);
        Assert.Equal("NIfTI-1 (single file)", header["format"]);
        Assert.Equal("little endian", header["byte_order"]);
        Assert.Equal("4 17 21 3 20 1 1 1", header["dim"]);
        Assert.Equal("int16 (4)", header["datatype"]);
        Assert.Equal("-1 4 4 8 2 0 0 0", header["pixdim"]);
        Assert.Equal("352", header["vox_offset"]);
        Assert.Equal("0.0754069686", header["scl_slope"]);
        Assert.Equal("3100.76172", header["scl_inter"]);
        Assert.Equal("spm - 3D normalized", header["descrip"]);
        Assert.Equal("10 (mm, s)", header["xyzt_units"]);
        Assert.Equal("2 (aligned)", header["qform_code"]);
        Assert.Equal("2 (aligned)", header["sform_code"]);
        Assert.Equal("sform", header["affine_source"]);
        Assert.Equal("-4 0 0 32", header["affine_row0"]);
        Assert.Equal("n+1", header["magic"]);
    }

    [Fact]
    public void SpatialUnitsOtherThanMillimetresAreConverted()
    {
        byte[] bytes = File.ReadAllBytes(Data("nibabel/anatomical.nii"));
        bytes[123] = 1;  // xyzt_units: metres
        string metres = files.Write("metres.nii", bytes);
        using var volume = NiftiReader.Read(metres);
        Assert.Equal([2000.0, 2000, 2000], volume.Spacing);
        AssertAffine(Rows([-2000, 0, 0, 32000], [0, 2000, 0, -40000], [0, 0, 2000, -16000]), volume.Affine, 1e-6);
        // The header keeps the file's own numbers.
        AssertAffine(Rows([-2, 0, 0, 32], [0, 2, 0, -40], [0, 0, 2, -16]), NiftiReader.ReadHeader(metres).BestAffine, 1e-9);
    }

    [Theory]
    [InlineData("nifti/dtype_complex64.nii.gz", "complex64 (32)")]
    [InlineData("nifti/dtype_uint64_huge.nii", "uint64 voxels above 2^63 - 1")]
    public void UnsupportedDataIsRefused(string name, string fault)
    {
        var error = Assert.Throws<NotSupportedException>(() => NiftiReader.Read(Data(name)));
        Assert.Contains(Data(name), error.Message);
        Assert.Contains(fault, error.Message);
        // The header alone still reads, for inspection.
        _ = NiftiReader.ReadHeader(Data(name));
    }

    [Theory]
    [InlineData(1536, 128, "float128 (1536)")]
    [InlineData(1792, 128, "complex128 (1792)")]
    [InlineData(2048, 256, "complex256 (2048)")]
    [InlineData(1, 1, "binary (1)")]
    public void OtherUnsupportedTypesAreRefusedByName(int code, int bitpix, string fault)
    {
        byte[] bytes = Plain(Data("nifti/dtype_float64.nii.gz"));
        PutI16(bytes, 70, code);
        PutI16(bytes, 72, bitpix);
        string path = files.Write("unsupported.nii", bytes);
        var error = Assert.Throws<NotSupportedException>(() => NiftiReader.Read(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(fault, error.Message);
    }

    [Fact]
    public void RgbaHasFourChannels()
    {
        // The RGB24 file relabelled RGBA32: its 72 bytes are 18 voxels of 4 channels.
        byte[] bytes = File.ReadAllBytes(Data("nifti/dtype_rgb24.nii"));
        PutI16(bytes, 70, 2304);
        PutI16(bytes, 72, 32);
        PutI16(bytes, 42, 3);  // dim[1..3] = 3, 3, 2
        string path = files.Write("rgba.nii", bytes);
        using var volume = NiftiReader.Read(path);
        Assert.Equal([4L, 2, 3, 3], volume.Voxels.shape);
        using var original = NiftiReader.Read(Data("nifti/dtype_rgb24.nii"));
        // Channel c of voxel v is byte 4v + c of the data, which is what the RGB file had at the same place.
        using var interleaved = volume.Voxels.permute(1, 2, 3, 0).contiguous().view(-1);
        using var rgbInterleaved = original.Voxels.permute(1, 2, 3, 0).contiguous().view(-1);
        Assert.Equal(Longs(rgbInterleaved), Longs(interleaved));
    }

    [Fact]
    public void MissingFilesAreNamed()
    {
        string absent = files.PathFor("absent.nii");
        Assert.Contains(absent, Assert.Throws<FileNotFoundException>(() => NiftiReader.Read(absent)).Message);
        string header = files.PathFor("lonely.hdr");
        File.Copy(Data("nibabel/nifti1.hdr"), header);
        var error = Assert.Throws<FileNotFoundException>(() => NiftiReader.Read(header));
        Assert.Contains(files.PathFor("lonely.img"), error.Message);
    }
}
