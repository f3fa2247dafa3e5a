using System.Buffers.Binary;
using System.Text.Json;
using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static Medformer.Tests.Datasets.NiftiTestFiles;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>Written files read back the same (by us and by nibabel), with the layout NIfTI-1 prescribes.</summary>
public sealed class NiftiWriterTests : IDisposable
{
    readonly NiftiTestFiles files = new();

    public void Dispose() => files.Dispose();

    public static TheoryData<ScalarType, int, string> Cases()
    {
        var data = new TheoryData<ScalarType, int, string>();
        foreach (var dtype in new[] { ScalarType.Byte, ScalarType.Int8, ScalarType.Int16, ScalarType.Int32, ScalarType.Int64, ScalarType.Float32,
            ScalarType.Float64 })
            foreach (int rank in new[] { 2, 3, 4 })
                foreach (string extension in new[] { ".nii", ".nii.gz" })
                    data.Add(dtype, rank, extension);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void RoundTrips(ScalarType dtype, int rank, string extension)
    {
        using var scope = NewDisposeScope();
        long[] shape = rank switch { 2 => [5, 6], 3 => [3, 5, 6], _ => [2, 3, 5, 6] };
        var voxels = Values(dtype, shape, seed: rank * 100 + (int)dtype);
        double[] spacing = rank == 2 ? [0.7, 0.9] : [2.5, 0.7, 0.9];
        var affine = Oblique(0.9, 0.7, rank == 2 ? 1 : 2.5, leftHanded: rank != 3);
        string path = files.PathFor($"round_{dtype}_{rank}d{extension}");

        NiftiWriter.Write(path, voxels, spacing, affine, "round trip");

        using var volume = NiftiReader.Read(path);
        Assert.Equal(dtype, volume.Voxels.dtype);
        Assert.Equal(shape, volume.Voxels.shape);
        AssertSameVoxels(voxels, volume.Voxels);
        Assert.Equal(spacing.Length, volume.Spacing.Length);
        for (int i = 0; i < spacing.Length; i++) Assert.Equal(spacing[i], volume.Spacing[i], 6);
        AssertAffine(affine, volume.Affine, 1e-5);

        var header = NiftiReader.ReadHeader(path);
        Assert.Equal((1, "n+1", 352.0), (header.Version, header.Magic, header.VoxOffset));
        Assert.Equal((2, 2), (header.QformCode, header.SformCode));
        AssertAffine(affine, header.QformAffine, 1e-5);
        Assert.Equal(rank >= 4 ? 10 : 2, header.XyztUnits);
        Assert.Equal("round trip", header.Descrip);
        Assert.Null(header.Scaling);
        byte[] plain = Plain(path);
        Assert.Equal(348, BinaryPrimitives.ReadInt32LittleEndian(plain));
        Assert.Equal(new byte[4], plain[348..352]);
        Assert.Equal(352 + voxels.numel() * voxels.element_size(), plain.LongLength);
        Assert.Equal(extension == ".nii.gz", File.ReadAllBytes(path)[0] == 0x1F);
        Assert.Single(Directory.GetFiles(files.Directory, $"*round_{dtype}_{rank}d*"));
    }

    [Fact]
    public void FiveAxesAndOneAxisRoundTrip()
    {
        using var scope = NewDisposeScope();
        foreach (long[] shape in new long[][] { [2, 1, 3, 4, 5], [7] })
        {
            var voxels = Values(ScalarType.Float32, shape, seed: shape.Length);
            double[] spacing = shape.Length == 1 ? [1.5] : [3, 2, 1];
            string path = files.PathFor($"rank{shape.Length}.nii.gz");
            NiftiWriter.Write(path, voxels, spacing);
            using var volume = NiftiReader.Read(path);
            Assert.Equal(shape, volume.Voxels.shape);
            AssertSameVoxels(voxels, volume.Voxels);
            Assert.Equal(spacing, volume.Spacing);
        }
    }

    [Fact]
    public void WithoutAnAffineReadersFallBackToTheSpacing()
    {
        using var scope = NewDisposeScope();
        var voxels = Values(ScalarType.Int16, [3, 4, 5], seed: 1);
        string path = files.PathFor("plain.nii");
        NiftiWriter.Write(path, voxels, [2.5, 2, 1.5]);
        var header = NiftiReader.ReadHeader(path);
        Assert.Equal((0, 0), (header.QformCode, header.SformCode));
        Assert.Equal("pixdim", header.BestAffineSource);
        // nibabel's base affine for shape (5, 4, 3) and zooms (1.5, 2, 2.5): x flipped, the centre at 0.
        AssertAffine(Rows([-1.5, 0, 0, 3], [0, 2, 0, -3], [0, 0, 2.5, -2.5]), header.BestAffine, 1e-12);
    }

    [Fact]
    public void ShearKeepsTheSformAndDropsTheQform()
    {
        using var scope = NewDisposeScope();
        var affine = Rows([1, 0.5, 0, 4], [0, 1, 0, 5], [0, 0, 1, 6]);
        string path = files.PathFor("shear.nii");
        NiftiWriter.Write(path, Values(ScalarType.Float32, [2, 2, 2], 3), [1, Math.Sqrt(1.25), 1], affine);
        var header = NiftiReader.ReadHeader(path);
        Assert.Equal((0, 2), (header.QformCode, header.SformCode));
        AssertAffine(affine, header.BestAffine, 1e-6);
    }

    [Fact]
    public void ReplacesAnExistingFileAndLeavesTheTensorAlone()
    {
        using var scope = NewDisposeScope();
        string path = files.PathFor("replace.nii.gz");
        var first = Values(ScalarType.Float32, [2, 3, 4], 5);
        var second = Values(ScalarType.Float32, [4, 3, 2], 6);
        NiftiWriter.Write(path, first, [1, 1, 1]);
        NiftiWriter.Write(path, second, [1, 1, 1]);
        using var volume = NiftiReader.Read(path);
        AssertSameVoxels(second, volume.Voxels);
        Assert.Equal(24, first.numel());  // still alive: Write does not dispose its argument
        Assert.True(float.IsFinite(first.sum().item<float>()));

        // A refused write leaves the old file as it was, and no temporary file.
        Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, first, [1, 1]));
        using var again = NiftiReader.Read(path);
        AssertSameVoxels(second, again.Voxels);
        Assert.Equal(new[] { path }, Directory.GetFiles(files.Directory, "*replace*"));
    }

    [Fact]
    public void BadArgumentsAreRefused()
    {
        using var scope = NewDisposeScope();
        var voxels = Values(ScalarType.Float32, [2, 3, 4], 7);
        string path = files.PathFor("bad.nii");
        Assert.Contains(".nii or .nii.gz", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(files.PathFor("bad.img"), voxels, [1, 1, 1])).Message);
        Assert.Contains("Bool", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, ones([2, 2], dtype: ScalarType.Bool), [1, 1])).Message);
        Assert.Contains("Float16", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, ones([2, 2], dtype: ScalarType.Float16), [1, 1])).Message);
        Assert.Contains("spacing has 2 entries", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 1])).Message);
        Assert.Contains("positive and finite", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 0, 1])).Message);
        Assert.Contains("positive and finite", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, double.NaN, 1])).Message);
        Assert.Contains("extents are 1 to 32767", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, zeros([0, 3, 4]), [1, 1, 1])).Message);
        Assert.Contains("extents are 1 to 32767", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, zeros([1, 1, 40000], dtype: ScalarType.Byte),
            [1, 1, 1])).Message);
        Assert.Contains("1 to 7 axes", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, zeros([1, 1, 1, 1, 1, 1, 1, 2]), [1, 1, 1])).Message);
        Assert.Contains("spacing along that axis is 1", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 1, 1], Rows([2, 0, 0, 0], [0,
            1, 0, 0], [0, 0, 1, 0]))).Message);
        Assert.Contains("last row", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 1, 1], new double[,] { { 1, 0, 0, 0 }, { 0, 1, 0,
            0 }, { 0, 0, 1, 0 }, { 0, 0, 1, 1 } })).Message);
        Assert.Contains("not 4x4", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 1, 1], new double[3, 4])).Message);
        Assert.Contains("non-finite", Assert.Throws<ArgumentException>(() => NiftiWriter.Write(path, voxels, [1, 1, 1], Rows([1, 0, 0, double.NaN], [0, 1, 0,
            0], [0, 0, 1, 0]))).Message);
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(files.Directory));
    }

    /// <summary>Debian's nibabel reads our files with the same voxels, affine, codes and qform.</summary>
    [NibabelFact]
    public void NibabelReadsWhatWeWrite()
    {
        using var scope = NewDisposeScope();
        var cases = new (ScalarType Dtype, long[] Shape, double[] Spacing, double[,] Affine, string Name)[]
        {
            (ScalarType.Int16, [3, 5, 6], [2.5, 0.7, 0.9], Oblique(0.9, 0.7, 2.5, leftHanded: true), "oblique_int16.nii.gz"),
            (ScalarType.Float32, [2, 3, 5, 6], [2.5, 0.7, 0.9], Oblique(0.9, 0.7, 2.5, leftHanded: false), "oblique_float32_4d.nii"),
            (ScalarType.Byte, [5, 6], [0.7, 0.9], Oblique(0.9, 0.7, 1, leftHanded: true), "slice_uint8.nii"),
            (ScalarType.Int64, [3, 5, 6], [2, 1, 1], Rows([-1, 0, 0, 10], [0, 1, 0, 20], [0, 0, 2, 30]), "int64.nii.gz"),
            (ScalarType.Float64, [3, 5, 6], [3, 2, 1], Rows([0, 0, 3, 1], [1, 0, 0, 2], [0, 2, 0, 3]), "permuted_float64.nii"),
            (ScalarType.Int8, [3, 5, 6], [1, 1, 1], Rows([1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]), "int8.nii"),
            (ScalarType.Int32, [3, 5, 6], [1, 1, 1], Rows([-1, 0, 0, 0], [0, -1, 0, 0], [0, 0, 1, 0]), "int32_lps.nii.gz"),
        };
        var written = new List<Tensor>();
        foreach (var (dtype, shape, spacing, affine, name) in cases)
        {
            written.Add(Values(dtype, shape, seed: name.Length));
            NiftiWriter.Write(files.PathFor(name), written[^1], spacing, affine);
        }
        var read = Nibabel([.. cases.Select(c => files.PathFor(c.Name))]);
        foreach (var ((dtype, shape, _, affine, name), voxels) in cases.Zip(written))
        {
            var nibabel = read.GetProperty(files.PathFor(name));
            Assert.Equal(shape, nibabel.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()).ToArray());
            Assert.Equal(dtype switch
            {
                ScalarType.Byte => "uint8", ScalarType.Int8 => "int8", ScalarType.Int16 => "int16", ScalarType.Int32 => "int32",
                ScalarType.Int64 => "int64", ScalarType.Float32 => "float32", _ => "float64",
            }, nibabel.GetProperty("dtype").GetString());
            Assert.Equal(2, nibabel.GetProperty("sform_code").GetInt32());
            Assert.Equal(2, nibabel.GetProperty("qform_code").GetInt32());
            AssertAffine(affine, Matrix(nibabel.GetProperty("affine")), 1e-5);
            AssertAffine(affine, Matrix(nibabel.GetProperty("qform")), 1e-5);
            double[] theirs = nibabel.GetProperty("data").EnumerateArray().Select(e => e.GetDouble()).ToArray();
            double[] ours = NiftiTestFiles.Values(voxels);
            Assert.Equal(ours.Length, theirs.Length);
            for (int i = 0; i < ours.Length; i++)
                if (ours[i] != theirs[i]) Assert.Fail($"{name}[{i}]: we wrote {ours[i]}, nibabel read {theirs[i]}");
        }
    }

    static double[,] Matrix(JsonElement rows)
    {
        var m = new double[4, 4];
        int r = 0;
        foreach (var row in rows.EnumerateArray())
        {
            int c = 0;
            foreach (var value in row.EnumerateArray()) m[r, c++] = value.GetDouble();
            r++;
        }
        return m;
    }

    /// <summary>Rotated axes with zooms (x, y, z); left-handed ones (qfac -1) mirror z.</summary>
    static double[,] Oblique(double x, double y, double z, bool leftHanded)
    {
        double a = 0.3, b = 0.2;
        double[,] rz = { { Math.Cos(a), -Math.Sin(a), 0 }, { Math.Sin(a), Math.Cos(a), 0 }, { 0, 0, 1 } };
        double[,] rx = { { 1, 0, 0 }, { 0, Math.Cos(b), -Math.Sin(b) }, { 0, Math.Sin(b), Math.Cos(b) } };
        double[] zooms = [x, y, leftHanded ? -z : z];
        var affine = new double[4, 4];
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
            {
                double sum = 0;
                for (int k = 0; k < 3; k++) sum += rz[r, k] * rx[k, c];
                affine[r, c] = sum * zooms[c];
            }
        affine[0, 3] = 10;
        affine[1, 3] = -20;
        affine[2, 3] = 5.5;
        affine[3, 3] = 1;
        return affine;
    }

    /// <summary>Values across the dtype's range, its extremes included.</summary>
    static Tensor Values(ScalarType dtype, long[] shape, int seed)
    {
        var generator = new Generator((ulong)seed);
        Tensor values = dtype switch
        {
            ScalarType.Float32 or ScalarType.Float64 => randn(shape, dtype: dtype, generator: generator).mul_(1000),
            ScalarType.Byte => randint(0, 256, shape, dtype: dtype, generator: generator),
            ScalarType.Int8 => randint(-128, 128, shape, dtype: dtype, generator: generator),
            ScalarType.Int16 => randint(short.MinValue, short.MaxValue + 1L, shape, dtype: dtype, generator: generator),
            ScalarType.Int32 => randint(int.MinValue, int.MaxValue + 1L, shape, dtype: dtype, generator: generator),
            _ => randint(long.MinValue / 2, long.MaxValue / 2, shape, dtype: dtype, generator: generator).mul_(2),
        };
        using var flat = values.view(-1);
        if (dtype == ScalarType.Int64)
        {
            flat[0].fill_(long.MinValue);
            flat[-1].fill_(long.MaxValue);
        }
        return values;
    }
}
