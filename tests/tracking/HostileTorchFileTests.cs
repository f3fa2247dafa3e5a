using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Medformer.Tracking.Interop;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// Crafted inputs of <c>medformer import</c> (issue 27): many wide views of one storage, a compressed storage, a
/// LONG1 integer torch 1.13 loads, a safetensors header whose length starts with byte 0x80. Each is refused in one
/// line or read right, within a memory budget.
/// </summary>
public sealed class HostileTorchFileTests(TorchStateDicts files, ITestOutputHelper output) : IClassFixture<TorchStateDicts>
{
    const long Slack = 512L << 20;

    // 64 views of a 1 MiB storage, each 16 MiB wide (stride 0): about 1 GiB materialised from a 1 MB file.
    string ManyViews()
    {
        string path = Path.Combine(files.Folder, "views.pt");
        if (File.Exists(path)) return path;
        const string script = """
            import collections, sys, torch
            n = 1 << 18
            base = torch.zeros(n)
            torch.save(collections.OrderedDict(("v%d" % i, base.as_strided([16 * n], [0])) for i in range(64)), sys.argv[1])
            """;
        var result = Repo.Run("/usr/bin/python3", ["-c", script, path]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return path;
    }

    [Fact]
    public void ManyWideViewsOfOneStorageAreRefusedPastTheBudget()
    {
        string path = ManyViews();
        var e = Assert.Throws<InvalidDataException>(() => StateDictImport.Read(path));
        Assert.StartsWith(path + ": ", e.Message);
        Assert.Contains($"over the limit of {TorchFile.Budget(new FileInfo(path).Length)}", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void ImportOfManyWideViewsStaysWithinTheMemoryBudgetAndSaysOneLine()
    {
        string path = ManyViews();
        string home = Path.Combine(files.Folder, "home");
        var environment = new Dictionary<string, string> { ["MEDFORMER_HOME"] = home };
        // The baseline: the same command, libtorch loaded, on a file that is not there.
        var baseline = PeakMemory.Run(Repo.Cli, ["import", Path.Combine(files.Folder, "none.pt"), "--config", "tiny", "--out", Path.Combine(files.Folder,
            "none")], files.Folder, environment);
        var hostile = PeakMemory.Run(Repo.Cli, ["import", path, "--config", "tiny", "--out", Path.Combine(files.Folder, "views-out")], files.Folder,
            environment);
        output.WriteLine($"baseline {baseline.PeakBytes >> 20} MiB ({baseline.ProgramStderr}); hostile {hostile.PeakBytes >> 20} MiB: {hostile.ProgramStderr}");
        Assert.Equal(1, hostile.ExitCode);
        Assert.Equal($"medformer import: {path}: ", hostile.ProgramStderr[..($"medformer import: {path}: ".Length)]);
        Assert.Contains("over the limit of", hostile.ProgramStderr);
        Assert.Single(hostile.ProgramStderr.Split('\n'));
        Assert.True(hostile.PeakBytes <= baseline.PeakBytes + Slack, $"peak {hostile.PeakBytes >> 20} MiB, baseline {baseline.PeakBytes >> 20} MiB");
    }

    [Fact]
    public void ImportWithAConfigThatIsNeitherAPresetNorAFileIsABadArgument()
    {
        var result = Repo.Run(Repo.Cli, ["import", files["mixed.pt"], "--config", "nosuch", "--out", Path.Combine(files.Folder, "nosuch-out")], files.Folder,
            120,
            new Dictionary<string, string> { ["MEDFORMER_HOME"] = Path.Combine(files.Folder, "home") });
        Assert.Equal(2, result.ExitCode);
        Assert.Equal("medformer import: --config 'nosuch': neither a preset (tiny, small, base, large) nor a file.", result.Stderr.Trim());
    }

    [Fact]
    public void ADeflatedStorageReadsAsStoredAndADeflateBombIsRefused()
    {
        // TorchSharp.PyBridge's save_py deflates every member: such a storage reads bit for bit as the stored one.
        string path = Path.Combine(files.Folder, "deflated.pt");
        File.Copy(files["mixed.pt"], path, overwrite: true);
        using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
        {
            var entry = zip.GetEntry("mixed/data/0")!;
            byte[] bytes;
            using (var input = entry.Open())
            using (var memory = new MemoryStream())
            {
                input.CopyTo(memory);
                bytes = memory.ToArray();
            }
            entry.Delete();
            using var stream = zip.CreateEntry("mixed/data/0", CompressionLevel.SmallestSize).Open();
            stream.Write(bytes);
        }
        using (var stored = StateDictImport.Read(files["mixed.pt"]))
        using (var deflated = StateDictImport.Read(path))
            foreach (var (name, tensor) in stored.Tensors)
                Assert.True(tensor.bytes.SequenceEqual(deflated.Tensors[name].bytes), name);

        // 256 MiB of zeros deflate to about 256 KB: declared, the storage is far past the budget of so small a file.
        string bomb = Path.Combine(files.Folder, "bomb.pt");
        using (var zip = ZipFile.Open(bomb, ZipArchiveMode.Create))
        {
            using (var version = zip.CreateEntry("bomb/version", CompressionLevel.NoCompression).Open()) version.Write("3\n"u8);
            using (var pickle = zip.CreateEntry("bomb/data.pkl", CompressionLevel.NoCompression).Open()) pickle.Write(OneTensorPickle(64L << 20));
            using var data = zip.CreateEntry("bomb/data/0", CompressionLevel.SmallestSize).Open();
            var zeros = new byte[1 << 20];
            for (int i = 0; i < 256; i++) data.Write(zeros);
        }
        output.WriteLine($"bomb: {new FileInfo(bomb).Length} bytes");
        var e = Assert.Throws<InvalidDataException>(() => StateDictImport.Read(bomb));
        Assert.StartsWith(bomb + ": bomb/data/0 is compressed", e.Message);
        Assert.Contains($"over the limit of {TorchFile.Budget(new FileInfo(bomb).Length)} bytes", e.Message);
    }

    /// <summary>{'w': a float32 tensor of <paramref name="numel"/> elements in storage '0'}, as torch.save pickles it.</summary>
    static byte[] OneTensorPickle(long numel)
    {
        var pickle = new List<byte> { 0x80, 2, (byte)'}', (byte)'X', 1, 0, 0, 0, (byte)'w', (byte)'c' };
        pickle.AddRange(Encoding.ASCII.GetBytes("torch._utils\n_rebuild_tensor_v2\n"));
        pickle.AddRange([(byte)'(', (byte)'(', (byte)'X', 7, 0, 0, 0, .. "storage"u8, (byte)'c', .. Encoding.ASCII.GetBytes("torch\nFloatStorage\n"),
            (byte)'X', 1, 0, 0, 0, (byte)'0', (byte)'X', 3, 0, 0, 0, .. "cpu"u8, (byte)'J', .. BitConverter.GetBytes((int)numel), (byte)'t', (byte)'Q',
            (byte)'K', 0, (byte)'J', .. BitConverter.GetBytes((int)numel), 0x85, (byte)'K', 1, 0x85,
                0x89, (byte)'}', (byte)'t', (byte)'R', (byte)'s', (byte)'.']);
        return [.. pickle];
    }

    [Fact]
    public void Long1IntegersComeOutAsLongs()
    {
        // pickle.dumps({'a': 2**40}, protocol=2) by Python 3: LONG1 with 6 bytes.
        byte[] dumped = [0x80, 0x02, 0x7d, 0x71, 0x00, 0x58, 0x01, 0x00, 0x00, 0x00, 0x61, 0x71, 0x01, 0x8a, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0x73,
            0x2e];
        var dict = Assert.IsType<PickleDict>(PickleReader.Load(dumped, "long1.pkl"));
        Assert.Equal(1L << 40, Assert.IsType<long>(dict["a"]));

        // A tensor whose size and offset are LONG1: torch 1.13 loads it, so must we.
        var pickle = new List<byte> { 0x80, 0x02, (byte)'c' };
        pickle.AddRange(Encoding.ASCII.GetBytes("torch._utils\n_rebuild_tensor_v2\n"));
        pickle.AddRange([(byte)'(', (byte)'N', (byte)'Q', 0x8a, 0x01, 0x01, 0x8a, 0x01, 0x03, 0x85, (byte)'K', 0x01, 0x85, (byte)'t', (byte)'R', (byte)'.']);
        var storage = new TorchStorage("0", "FloatStorage", TorchSharp.torch.ScalarType.Float32, "cpu", 4);
        var tensor = Assert.IsType<TorchTensorRef>(PickleReader.Load([.. pickle], "tensor.pkl", _ => storage));
        Assert.Equal(1L, tensor.Offset);
        Assert.Equal([3L], tensor.Size);
        Assert.Equal([1L], tensor.Stride);
    }

    [Fact]
    public void ALong1IntegerWrittenByPythonReads()
    {
        string path = Path.Combine(files.Folder, "long1.pt");
        // torch.save writes a plain int of the dict as pickle does: 2**40 is LONG1. The tensor must still read.
        const string script = """
            import sys, torch, pickletools
            torch.save({"step": 2 ** 40, "w": torch.arange(3.0)}, sys.argv[1])
            """;
        var result = Repo.Run("/usr/bin/python3", ["-c", script, path]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        using var file = TorchFile.Open(path);
        var root = Assert.IsType<PickleDict>(file.Root);
        Assert.Equal(1L << 40, Assert.IsType<long>(root["step"]));
        using var read = StateDictImport.Read(path);
        Assert.Equal([0f, 1f, 2f], read.Tensors["w"].data<float>().ToArray());
    }

    [Fact]
    public void ASafetensorsHeaderLengthStartingWith0x80IsReadAsSafetensors()
    {
        string json = """{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}""";
        int length = 128 + 256;   // 0x180: its first little-endian byte is 0x80, as a pickle's PROTO
        Assert.True(json.Length <= length);
        var bytes = new byte[8 + length + 8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)length);
        Assert.Equal(0x80, bytes[0]);
        Encoding.ASCII.GetBytes(json.PadRight(length, ' ')).CopyTo(bytes, 8);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + length), 1.5f);
        BinaryPrimitives.WriteSingleLittleEndian(bytes.AsSpan(8 + length + 4), -2f);
        string path = Path.Combine(files.Folder, "x80.safetensors");
        File.WriteAllBytes(path, bytes);
        using var read = StateDictImport.Read(path);
        Assert.Equal("safetensors", read.Format);
        Assert.Equal([1.5f, -2f], read.Tensors["w"].data<float>().ToArray());
        // And torch files still go to the torch reader.
        using var torchFile = StateDictImport.Read(files["legacy.pt"]);
        Assert.StartsWith("torch.save", torchFile.Format);
    }
}
