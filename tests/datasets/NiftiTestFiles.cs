using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Compression;
using System.Text.Json;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>What the NIfTI tests share: the committed files, a scratch directory, header patching, nibabel.</summary>
sealed class NiftiTestFiles : IDisposable
{
    public string Directory { get; } = Path.Combine(Path.GetTempPath(), $"medformer-nifti-{Guid.NewGuid():N}");

    public NiftiTestFiles() => System.IO.Directory.CreateDirectory(Directory);

    public string PathFor(string name) => Path.Combine(Directory, name);

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>A committed test file, under tests/datasets/data (nibabel/... or nifti/...).</summary>
    public static string Data(string name) => Path.Combine(Repo.Root, "tests", "datasets", "data", name);

    /// <summary>A file's bytes, decompressed if it is gzip.</summary>
    public static byte[] Plain(string path)
    {
        byte[] bytes = File.ReadAllBytes(path);
        if (bytes.Length < 2 || bytes[0] != 0x1F || bytes[1] != 0x8B) return bytes;
        using var gzip = new GZipStream(new MemoryStream(bytes), CompressionMode.Decompress);
        using var output = new MemoryStream();
        gzip.CopyTo(output);
        return output.ToArray();
    }

    public static byte[] Gzip(byte[] bytes)
    {
        using var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true)) gzip.Write(bytes);
        return output.ToArray();
    }

    /// <summary>Writes <paramref name="bytes"/> (gzipped when the name ends in .gz) and returns the path.</summary>
    public string Write(string name, byte[] bytes)
    {
        string path = PathFor(name);
        File.WriteAllBytes(path, name.EndsWith(".gz", StringComparison.Ordinal) ? Gzip(bytes) : bytes);
        return path;
    }

    public static void PutI16(byte[] b, int offset, long value, bool bigEndian = false)
    {
        if (bigEndian) BinaryPrimitives.WriteInt16BigEndian(b.AsSpan(offset), (short)value);
        else BinaryPrimitives.WriteInt16LittleEndian(b.AsSpan(offset), (short)value);
    }

    public static void PutI32(byte[] b, int offset, long value, bool bigEndian = false)
    {
        if (bigEndian) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(offset), (int)value);
        else BinaryPrimitives.WriteInt32LittleEndian(b.AsSpan(offset), (int)value);
    }

    public static void PutI64(byte[] b, int offset, long value, bool bigEndian = false)
    {
        if (bigEndian) BinaryPrimitives.WriteInt64BigEndian(b.AsSpan(offset), value);
        else BinaryPrimitives.WriteInt64LittleEndian(b.AsSpan(offset), value);
    }

    public static void PutF32(byte[] b, int offset, double value, bool bigEndian = false)
    {
        if (bigEndian) BinaryPrimitives.WriteSingleBigEndian(b.AsSpan(offset), (float)value);
        else BinaryPrimitives.WriteSingleLittleEndian(b.AsSpan(offset), (float)value);
    }

    public static void PutF64(byte[] b, int offset, double value, bool bigEndian = false)
    {
        if (bigEndian) BinaryPrimitives.WriteDoubleBigEndian(b.AsSpan(offset), value);
        else BinaryPrimitives.WriteDoubleLittleEndian(b.AsSpan(offset), value);
    }

    /// <summary>A tensor's values widened to double, flattened.</summary>
    public static double[] Values(Tensor tensor)
    {
        using var wide = tensor.to(ScalarType.Float64);
        using var flat = wide.contiguous().view(-1);
        return flat.data<double>().ToArray();
    }

    /// <summary>A tensor's values as int64, flattened (exact for every integer dtype).</summary>
    public static long[] Longs(Tensor tensor)
    {
        using var wide = tensor.to(ScalarType.Int64);
        using var flat = wide.contiguous().view(-1);
        return flat.data<long>().ToArray();
    }

    /// <summary>Same dtype, shape and bytes.</summary>
    public static void AssertSameVoxels(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        using var a = expected.contiguous();
        using var b = actual.contiguous();
        Assert.True(a.bytes.SequenceEqual(b.bytes), "the voxels differ");
    }

    public static void AssertAffine(double[,] expected, double[,] actual, double tolerance)
    {
        Assert.Equal(4, actual.GetLength(0));
        Assert.Equal(4, actual.GetLength(1));
        for (int r = 0; r < 4; r++)
            for (int c = 0; c < 4; c++)
                Assert.True(Math.Abs(expected[r, c] - actual[r, c]) <= tolerance,
                    $"affine[{r},{c}]: expected {expected[r, c]}, got {actual[r, c]}");
    }

    /// <summary>A 4x4 affine from its first three rows.</summary>
    public static double[,] Rows(double[] x, double[] y, double[] z) => new double[,]
    {
        { x[0], x[1], x[2], x[3] }, { y[0], y[1], y[2], y[3] }, { z[0], z[1], z[2], z[3] }, { 0, 0, 0, 1 },
    };

    public static bool NibabelAvailable { get; } = Probe();

    static bool Probe()
    {
        try
        {
            using var python = Process.Start(new ProcessStartInfo("/usr/bin/python3", ["-c", "import nibabel"])
            {
                RedirectStandardError = true,
                RedirectStandardOutput = true,
            });
            if (python is null) return false;
            python.WaitForExit();
            return python.ExitCode == 0;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return false;
        }
    }

    /// <summary>What Debian's nibabel reads from each file (tests/reference/nifti_reference.py check), by path; one
    /// Python process for all, since importing nibabel takes a second or more.</summary>
    public static JsonElement Nibabel(params string[] paths)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(Repo.Root, "tests", "reference", "nifti_reference.py"));
        start.ArgumentList.Add("check");
        foreach (string path in paths) start.ArgumentList.Add(path);
        using var python = Process.Start(start)!;
        var stderr = python.StandardError.ReadToEndAsync();
        string stdout = python.StandardOutput.ReadToEnd();
        python.WaitForExit();
        Assert.True(python.ExitCode == 0, $"nifti_reference.py check {string.Join(' ', paths)} exited {python.ExitCode}: {stderr.Result}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }
}
