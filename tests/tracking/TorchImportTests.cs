using System.IO.Compression;
using System.Text;
using Medformer.Runtime;
using Medformer.Tracking.Interop;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Tracking;

/// <summary>
/// torch.save'd state dicts written by PyTorch 1.13 read back into the same dtypes, shapes and bit-identical values;
/// pickles that ask for anything but a state_dict's objects are refused before anything runs.
/// </summary>
public sealed class TorchImportTests(TorchStateDicts files) : IClassFixture<TorchStateDicts>
{
    static void AssertSameTensors(IReadOnlyDictionary<string, Tensor> expected, IReadOnlyDictionary<string, Tensor> actual, Func<string, string>? rename = null)
    {
        Assert.Equal(expected.Keys.Order(), actual.Keys.Select(rename ?? (k => k)).Order());
        foreach (var (name, tensor) in actual)
        {
            var want = expected[(rename ?? (k => k))(name)];
            Assert.Equal(want.dtype, tensor.dtype);
            Assert.Equal(want.shape, tensor.shape);
            Assert.True(tensor.is_contiguous(), name);
            Assert.True(want.bytes.SequenceEqual(tensor.bytes), $"{name}: values differ");
        }
    }

    [Theory]
    [InlineData("mixed.pt", "torch.save (zip)")]
    [InlineData("legacy.pt", "torch.save (legacy)")]
    public void EveryDtypeAndViewReadsBackBitIdentical(string file, string format)
    {
        var expected = Safetensors.Load(files["expected.safetensors"]);
        using var read = StateDictImport.Read(files[file]);
        Assert.Equal(format, read.Format);
        Assert.Null(read.Wrapper);
        Assert.Empty(read.Skipped);
        AssertSameTensors(expected, read.Tensors);
        Assert.Equal(ScalarType.BFloat16, read.Tensors["layer.bf16"].dtype);
        Assert.Equal(1L << 40, read.Tensors["layer.steps"][2].item<long>());
        // The three views of one storage: the transposed matrix's row 3 is the column.
        using var row = read.Tensors["shared.transposed"][3];
        Assert.True(row.bytes.SequenceEqual(read.Tensors["shared.column"].bytes));
        foreach (var tensor in expected.Values) tensor.Dispose();
    }

    [Fact]
    public void ALightningCheckpointYieldsItsStateDictWithThePrefixStripped()
    {
        var expected = Safetensors.Load(files["expected.safetensors"]);
        using var read = StateDictImport.Read(files["lightning.ckpt"]);
        Assert.Equal("state_dict", read.Wrapper);
        AssertSameTensors(expected, read.Tensors, name => name["model.".Length..]);

        var shapes = expected.ToDictionary(kv => kv.Key, kv => kv.Value.shape);
        shapes["layer.weight"] = [5, 3];
        shapes["extra.bias"] = [2];
        var match = StateDictImport.Match(read.Tensors, shapes);
        Assert.Equal(expected.Count - 1, match.Matched.Count);
        Assert.Equal("layer.half", match.Renamed["model.layer.half"]);
        Assert.Equal(["extra.bias"], match.Missing);
        Assert.Equal("model.layer.weight: [3, 5] in the file, [5, 3] in the model", Assert.Single(match.ShapeMismatches));
        Assert.Empty(match.Unmatched);
        foreach (var tensor in expected.Values) tensor.Dispose();
    }

    [Fact]
    public void AParameterIsReadAsItsTensor()
    {
        using var read = StateDictImport.Read(files["parameter.pth"]);
        using var expected = StateDictImport.Read(files["expected.safetensors"]);
        Assert.True(expected.Tensors["layer.weight"].bytes.SequenceEqual(read.Tensors["p.weight"].bytes));
    }

    [Fact]
    public void SafetensorsImportsToo()
    {
        using var read = StateDictImport.Read(files["expected.safetensors"]);
        Assert.Equal("safetensors", read.Format);
        Assert.Equal(9, read.Tensors.Count);
    }

    /// <summary>A pickle whose opcodes ask for <c>module.name</c> and call it with one string.</summary>
    static byte[] Calling(string module, string name, bool stackGlobal = false)
    {
        var bytes = new List<byte> { 0x80, (byte)(stackGlobal ? 4 : 2) };
        if (stackGlobal)
        {
            foreach (string part in new[] { module, name }) { bytes.Add(0x8c); bytes.Add((byte)part.Length); bytes.AddRange(Encoding.ASCII.GetBytes(part)); }
            bytes.Add(0x93);
        }
        else
            bytes.AddRange(Encoding.ASCII.GetBytes($"c{module}\n{name}\n"));
        string argument = "touch /tmp/medformer-pwned";
        bytes.Add(0x8c);
        bytes.Add((byte)argument.Length);
        bytes.AddRange(Encoding.ASCII.GetBytes(argument));
        bytes.AddRange([0x85, (byte)'R', (byte)'.']);
        return [.. bytes];
    }

    [Theory]
    [InlineData("os", "system", false, "os.system")]
    [InlineData("posix", "system", false, "posix.system")]
    [InlineData("builtins", "eval", true, "builtins.eval")]
    [InlineData("__builtin__", "eval", false, "builtins.eval")]
    [InlineData("subprocess", "Popen", true, "subprocess.Popen")]
    [InlineData("torch", "load", false, "torch.load")]
    [InlineData("torch._utils", "_rebuild_qtensor", false, "torch._utils._rebuild_qtensor")]
    public void AMaliciousPickleIsRefusedNamingWhatItAskedFor(string module, string name, bool stackGlobal, string named)
    {
        var e = Assert.Throws<InvalidDataException>(() => PickleReader.Load(Calling(module, name, stackGlobal), "evil.pkl"));
        Assert.Contains($"asks for {named}", e.Message);
        Assert.Contains("refused, nothing was run", e.Message);
        Assert.StartsWith("evil.pkl: ", e.Message);
    }

    [Fact]
    public void AnAllowedNameThatIsNotACallIsRefusedAsACall()
    {
        // torch.FloatStorage may name a storage's type, but calling it (REDUCE) is not something a state_dict does.
        var e = Assert.Throws<InvalidDataException>(() => PickleReader.Load(Calling("torch", "FloatStorage"), "odd.pkl"));
        Assert.Contains("a call of torch.FloatStorage", e.Message);
        // BUILD on a tensor (setting its __dict__) is refused too.
        var build = new byte[] { 0x80, 2, (byte)'c' }.Concat(Encoding.ASCII.GetBytes("collections\nOrderedDict\n")).Concat(new byte[] { (byte)')', 0x81,
            0x88, (byte)'b', (byte)'.' }).ToArray();
        Assert.Contains("setting the state of a dict", Assert.Throws<InvalidDataException>(() => PickleReader.Load(build, "b.pkl")).Message);
    }

    [Fact]
    public void AMaliciousPickleInsideATorchArchiveIsRefused()
    {
        string evil = Path.Combine(files.Folder, "evil.pt");
        File.Copy(files["mixed.pt"], evil, overwrite: true);
        using (var zip = ZipFile.Open(evil, ZipArchiveMode.Update))
        {
            zip.GetEntry("mixed/data.pkl")!.Delete();
            // Stored, as torch.save writes it.
            using var stream = zip.CreateEntry("mixed/data.pkl", CompressionLevel.NoCompression).Open();
            stream.Write(Calling("os", "system"));
        }
        var e = Assert.Throws<InvalidDataException>(() => StateDictImport.Read(evil));
        Assert.Contains("evil.pt:mixed/data.pkl: the pickle asks for os.system", e.Message);
        Assert.False(File.Exists("/tmp/medformer-pwned"));
    }

    [Fact]
    public void StoragesThatLieAboutTheirSizeAreRefused()
    {
        string lying = Path.Combine(files.Folder, "lying.pt");
        File.Copy(files["mixed.pt"], lying, overwrite: true);
        using (var zip = ZipFile.Open(lying, ZipArchiveMode.Update))
        {
            zip.GetEntry("mixed/data/0")!.Delete();
            using var stream = zip.CreateEntry("mixed/data/0").Open();
            stream.Write(new byte[4]);
        }
        var e = Assert.Throws<InvalidDataException>(() => StateDictImport.Read(lying));
        Assert.Contains("mixed/data/0 holds 4 bytes, but its storage is FloatStorage[15] (60 bytes)", e.Message);
    }
}
