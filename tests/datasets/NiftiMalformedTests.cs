using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static Medformer.Tests.Datasets.NiftiTestFiles;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Each kind of damage, to a little-endian NIfTI-1 and a big-endian NIfTI-2, plain and gzipped, is refused with an
/// <see cref="InvalidDataException"/> that names the file and the fault.
/// </summary>
public sealed class NiftiMalformedTests : IDisposable
{
    readonly NiftiTestFiles files = new();

    public void Dispose() => files.Dispose();

    /// <summary>A valid little-endian NIfTI-1 .nii as our writer makes it: int16 [3,4,5] after a 352-byte header.</summary>
    static byte[] Nifti1()
    {
        string directory = Path.Combine(Path.GetTempPath(), $"medformer-nifti-base-{Guid.NewGuid():N}");
        Directory.CreateDirectory(directory);
        try
        {
            string path = Path.Combine(directory, "base.nii");
            using (var voxels = arange(60, dtype: ScalarType.Int16).reshape(3, 4, 5))
                NiftiWriter.Write(path, voxels, [1, 1, 1]);
            return File.ReadAllBytes(path);
        }
        finally
        {
            Directory.Delete(directory, recursive: true);
        }
    }

    /// <summary>nibabel's big-endian NIfTI-2: int32 [3,4,5] after a 544-byte header.</summary>
    static byte[] Nifti2() => File.ReadAllBytes(Data("nifti/be_nifti2_qform.nii"));

    /// <summary>A fault: how to damage a NIfTI-1 and a NIfTI-2 file, and what the message must say.</summary>
    sealed record Fault(Func<byte[], byte[]> Damage1, Func<byte[], byte[]> Damage2, string Message, string? GzipMessage = null);

    static byte[] With(byte[] bytes, Action<byte[]> change)
    {
        byte[] copy = (byte[])bytes.Clone();
        change(copy);
        return copy;
    }

    static readonly Dictionary<string, Fault> Faults = new()
    {
        ["empty file"] = new(_ => [], _ => [], "truncated: the file ends inside sizeof_hdr"),
        ["truncated in sizeof_hdr"] = new(b => b[..3], b => b[..2], "truncated: the file ends inside sizeof_hdr"),
        ["truncated header"] = new(b => b[..200], b => b[..500], "truncated: the file ends inside the header"),
        ["bad sizeof_hdr"] = new(b => With(b, c => PutI32(c, 0, 349)), b => With(b, c => PutI32(c, 0, 541, bigEndian: true)),
            "neither 348 (NIfTI-1, Analyze) nor 540 (NIfTI-2)"),
        ["bad magic"] = new(b => With(b, c => "xyz\0"u8.CopyTo(c.AsSpan(344))), b => With(b, c => "n+3\0"u8.CopyTo(c.AsSpan(4))),
            "magic is \""),
        ["no magic in a .nii"] = new(b => With(b, c => c.AsSpan(344, 4).Clear()), b => With(b, c => c.AsSpan(4, 4).Clear()),
            "magic is \"\\x00\\x00\\x00\\x00\""),
        ["dim[0] zero"] = new(b => With(b, c => PutI16(c, 40, 0)), b => With(b, c => PutI64(c, 16, 0, bigEndian: true)),
            "dim[0] is 0, not a rank between 1 and 7"),
        ["dim[0] eight"] = new(b => With(b, c => PutI16(c, 40, 8)), b => With(b, c => PutI64(c, 16, 8, bigEndian: true)),
            "dim[0] is 8, not a rank between 1 and 7"),
        ["dim[0] negative"] = new(b => With(b, c => PutI16(c, 40, -3)), b => With(b, c => PutI64(c, 16, -3, bigEndian: true)),
            "dim[0] is -3"),
        ["zero extent"] = new(b => With(b, c => PutI16(c, 44, 0)), b => With(b, c => PutI64(c, 32, 0, bigEndian: true)),
            "dim[2] is 0: every extent up to dim[0] = 3 must be at least 1"),
        ["negative extent"] = new(b => With(b, c => PutI16(c, 46, -5)), b => With(b, c => PutI64(c, 40, -5, bigEndian: true)),
            "dim[3] is -5"),
        ["bitpix mismatch"] = new(b => With(b, c => PutI16(c, 72, 8)), b => With(b, c => PutI16(c, 14, 16, bigEndian: true)),
            "bitpix is "),
        ["unknown datatype"] = new(b => With(b, c => PutI16(c, 70, 17)), b => With(b, c => PutI16(c, 12, 17, bigEndian: true)),
            "datatype 17 is not a NIfTI datatype"),
        ["datatype zero"] = new(b => With(b, c => PutI16(c, 70, 0)), b => With(b, c => PutI16(c, 12, 0, bigEndian: true)),
            "datatype 0 is not a NIfTI datatype"),
        ["size overflows"] = new(
            b => With(b, c => { PutI16(c, 40, 7); PutI16(c, 70, 1024); PutI16(c, 72, 64); for (int i = 1; i <= 7; i++) PutI16(c, 40 + 2 * i, 32767); }),
            b => With(b, c => { PutI64(c, 24, long.MaxValue / 2, bigEndian: true); PutI64(c, 32, 4, bigEndian: true); }),
            "overflows 64-bit sizes"),
        ["vox_offset beyond the file"] = new(b => With(b, c => PutF32(c, 108, 1_000_000)), b => With(b, c => PutI64(c, 168, 1_000_000, bigEndian: true)),
            "vox_offset 1000000 is beyond the end of the file", "more than a"),
        ["vox_offset just beyond the data"] = new(b => With(b, c => PutF32(c, 108, 4096)), b => With(b, c => PutI64(c, 168, 4096, bigEndian: true)),
            "vox_offset 4096 is beyond the end of the file", "vox_offset 4096 is beyond the end of the decompressed data"),
        ["vox_offset inside the header"] = new(b => With(b, c => PutF32(c, 108, 100)), b => With(b, c => PutI64(c, 168, 540, bigEndian: true)),
            "lies inside the"),
        ["vox_offset negative"] = new(b => With(b, c => PutF32(c, 108, -16)), b => With(b, c => PutI64(c, 168, -16, bigEndian: true)),
            "vox_offset -16 is not a byte offset"),
        ["vox_offset not a number"] = new(b => With(b, c => PutF32(c, 108, double.NaN)), b => With(b, c => PutI64(c, 168, long.MinValue, bigEndian: true)),
            "is not a byte offset"),
        ["data short"] = new(b => b[..^10], b => b[..^10],
            "truncated: the header claims", "truncated: the voxel data ends before"),
        ["data cut at the header"] = new(b => b[..352], b => b[..544],
            "truncated: the header claims", "truncated: the voxel data ends before"),
        ["infinite intercept"] = new(b => With(b, c => { PutF32(c, 112, 2); PutF32(c, 116, double.PositiveInfinity); }),
            b => With(b, c => PutF64(c, 184, double.NegativeInfinity, bigEndian: true)),
            "applies but scl_inter is"),
    };

    public static TheoryData<string, int, bool> Cases()
    {
        var data = new TheoryData<string, int, bool>();
        foreach (string fault in Faults.Keys)
            foreach (int version in new[] { 1, 2 })
                foreach (bool gz in new[] { false, true })
                    data.Add(fault, version, gz);
        return data;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void IsRefusedNamingTheFileAndTheFault(string fault, int version, bool gz)
    {
        var damage = Faults[fault];
        byte[] bytes = version == 1 ? damage.Damage1(Nifti1()) : damage.Damage2(Nifti2());
        string path = files.Write($"damaged-v{version}.nii{(gz ? ".gz" : "")}", bytes);
        string message = gz ? damage.GzipMessage ?? damage.Message : damage.Message;
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(message, error.Message);
    }

    /// <summary>Faults of the header alone also stop a header-only read.</summary>
    [Theory]
    [InlineData("truncated header")]
    [InlineData("bad sizeof_hdr")]
    [InlineData("bad magic")]
    [InlineData("dim[0] eight")]
    [InlineData("zero extent")]
    [InlineData("bitpix mismatch")]
    [InlineData("size overflows")]
    [InlineData("vox_offset negative")]
    [InlineData("vox_offset inside the header")]
    public void HeaderOnlyReadsRefuseHeaderFaults(string fault)
    {
        string path = files.Write("header-fault.nii", Faults[fault].Damage1(Nifti1()));
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.ReadHeader(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains(Faults[fault].Message, error.Message);
    }

    [Fact]
    public void EndOfLineDamageToANifti2MagicIsRefused()
    {
        // What an FTP text-mode transfer does to "\r\n\x1a\n": nibabel refuses it too.
        string path = files.Write("eol.nii", With(Nifti2(), c => { c[8] = 10; c[9] = 26; }));
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(path));
        Assert.StartsWith(path + ": ", error.Message);
        Assert.Contains("end-of-line check bytes are 10 26 26 10", error.Message);
        // All zeros is tolerated, as nibabel tolerates it.
        string zeros = files.Write("eol-zero.nii", With(Nifti2(), c => c.AsSpan(8, 4).Clear()));
        using var volume = NiftiReader.Read(zeros);
        Assert.Equal([3L, 4, 5], volume.Voxels.shape);
    }

    [Fact]
    public void CorruptGzipIsRefusedNamingTheFile()
    {
        byte[] compressed = Gzip(Nifti1());
        byte[] garbled = (byte[])compressed.Clone();
        for (int i = 20; i < garbled.Length - 8; i += 3) garbled[i] ^= 0x5A;
        string path = files.PathFor("garbled.nii.gz");
        File.WriteAllBytes(path, garbled);
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(path));
        Assert.StartsWith(path + ": ", error.Message);

        string cut = files.PathFor("cut.nii.gz");
        File.WriteAllBytes(cut, compressed[..(compressed.Length / 2)]);
        error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(cut));
        Assert.StartsWith(cut + ": ", error.Message);
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void AGzipBombStopsAtWhatTheHeaderClaims()
    {
        // 64 MiB of voxels behind a header that claims 60 bytes: only the claimed bytes are decompressed. Past the
        // 64 MiB lies a second gzip member whose deflate data is invalid (block type 3): a reader that went on
        // inflating would meet it and fail; and one that kept what it inflated would allocate the 64 MiB.
        byte[] plain = Nifti1();
        using var output = new MemoryStream();
        using (var gzip = new System.IO.Compression.GZipStream(output, System.IO.Compression.CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(plain.AsSpan(0, 352));
            gzip.Write(new byte[120]);
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 64; i++) gzip.Write(zeros);
        }
        output.Write([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff]);
        string path = files.PathFor("bomb.nii.gz");
        File.WriteAllBytes(path, output.ToArray());
        long before = GC.GetAllocatedBytesForCurrentThread();
        using var volume = NiftiReader.Read(path);
        long allocated = GC.GetAllocatedBytesForCurrentThread() - before;
        Assert.Equal([3L, 4, 5], volume.Voxels.shape);
        Assert.True(allocated < 4 << 20, $"reading 60 bytes of voxels allocated {allocated / 1024} KiB of managed memory");
    }

    [Fact]
    public void AHeaderClaimingMoreThanGzipCanHoldIsRefusedBeforeAllocating()
    {
        // 32767³ int64 voxels (2 TiB) claimed by a file of a few hundred bytes.
        byte[] plain = With(Nifti1(), c => { PutI16(c, 70, 1024); PutI16(c, 72, 64); for (int i = 1; i <= 3; i++) PutI16(c, 40 + 2 * i, 32767); });
        string path = files.Write("claims.nii.gz", plain);
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(path));
        Assert.Contains("more than a", error.Message);
        Assert.Contains("gzip file can hold", error.Message);
    }

    [Fact]
    public void PairFaultsNameTheFileAtFault()
    {
        // The header and image of a pair: a short image names the image; a bad header names the header.
        byte[] plain = File.ReadAllBytes(Data("nifti/pair.hdr"));
        string header = files.Write("short.hdr", plain);
        string image = files.Write("short.img", File.ReadAllBytes(Data("nifti/pair.img"))[..100]);
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(header));
        Assert.StartsWith(image + ": ", error.Message);
        Assert.Contains("truncated", error.Message);

        string badHeader = files.Write("badhdr.hdr", With(plain, c => PutI16(c, 40, 9)));
        files.Write("badhdr.img", File.ReadAllBytes(Data("nifti/pair.img")));
        error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(files.PathFor("badhdr.img")));
        Assert.StartsWith(badHeader + ": ", error.Message);
        Assert.Contains("dim[0] is 9", error.Message);
    }

    [Fact]
    public void AnalyzeIsReadOnlyAsAPair()
    {
        // The same 348 bytes without a magic: a .hdr is Analyze 7.5, a .nii is refused for its magic.
        byte[] analyze = File.ReadAllBytes(Data("nibabel/analyze.hdr"));
        string single = files.Write("analyze.nii", [.. analyze, .. new byte[4], .. new byte[91 * 109 * 91]]);
        var error = Assert.Throws<InvalidDataException>(() => NiftiReader.Read(single));
        Assert.StartsWith(single + ": ", error.Message);
        Assert.Contains("not a NIfTI-1 file", error.Message);
    }
}
