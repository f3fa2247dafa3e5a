using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>Ours written, ours read: every dtype bit-exact, the layout the spec and the reference writer give, and the lifetimes of mapped views.</summary>
public sealed class SafetensorsRoundTripTests : IDisposable
{
    readonly SafetensorsTestFiles files = new();

    public void Dispose() => files.Dispose();

    static readonly long[][] Shapes = [[], [0], [3, 0, 2], [5], [2, 3, 4]];

    static readonly Dictionary<string, string> Metadata = new()
    {
        ["format"] = "pt",
        ["unicode"] = "naïve ✓ 😀",
        ["escapes"] = "\"quoted\" \\ back\nslash\ttab\u0001",
        [""] = "empty key",
    };

    /// <summary>Every dtype of the spec at every shape its bit size allows, filled with random bytes (0/1 for BOOL).</summary>
    static Dictionary<string, SafetensorsRawTensor> RandomRawTensors(int seed)
    {
        var random = new Random(seed);
        var tensors = new Dictionary<string, SafetensorsRawTensor>();
        foreach (var dtype in SafetensorsDtype.All)
            for (int s = 0; s < Shapes.Length; s++)
            {
                long elements = Shapes[s].Aggregate(1L, (a, b) => a * b);
                if (elements * dtype.BitSize % 8 != 0) continue;
                var data = new byte[elements * dtype.BitSize / 8];
                random.NextBytes(data);
                if (dtype == SafetensorsDtype.BOOL) for (int i = 0; i < data.Length; i++) data[i] &= 1;
                tensors[$"{dtype.Name}_{s}"] = new SafetensorsRawTensor(dtype, Shapes[s], data);
            }
        return tensors;
    }

    [Fact]
    public void EveryDtypeRoundTripsBitExact()
    {
        var raw = RandomRawTensors(seed: 7);
        string rawPath = files.PathFor("raw.safetensors");
        Safetensors.Save(raw, rawPath, Metadata);

        // Read back; the torch types then go out again through Save(tensors) and come back once more.
        var tensors = new Dictionary<string, Tensor>();
        using var scope = torch.NewDisposeScope();
        using (var file = SafetensorsFile.Open(rawPath))
        {
            Assert.Equal(Metadata, file.Metadata);
            Assert.Equal(raw.Keys.Order(StringComparer.Ordinal), file.Names.Order(StringComparer.Ordinal));
            foreach (var (name, expected) in raw)
            {
                var info = file.Info(name);
                Assert.Same(expected.Dtype, info.Dtype);
                Assert.Equal(expected.Shape, info.Shape);
                Assert.Equal(expected.Data.ToArray(), file.GetBytes(name).ToArray());
                using (var rawTensor = file.GetRawTensor(name)) Assert.Equal(expected.Data.ToArray(), SafetensorsTestFiles.Bytes(rawTensor));
                if (!info.Dtype.IsTorchType)
                {
                    var refused = Assert.Throws<SafetensorsException>(() => file.GetTensor(name));
                    Assert.Contains($"is {info.Dtype.Name}, which TorchSharp has no tensor type for", refused.Message);
                    continue;
                }
                Tensor tensor = file.GetTensor(name);
                Assert.Equal(info.Dtype.ScalarType, tensor.dtype);
                Assert.Equal(expected.Shape, tensor.shape);
                Assert.Equal(expected.Data.ToArray(), SafetensorsTestFiles.Bytes(tensor));
                Assert.Equal(info.ByteLength > 0, file.IsZeroCopy(name));
                tensors[name] = tensor;
            }
        }

        string torchPath = files.PathFor("torch.safetensors");
        Safetensors.Save(tensors, torchPath, new Dictionary<string, string>());
        using (var file = SafetensorsFile.Open(torchPath))
        {
            Assert.NotNull(file.Metadata);
            Assert.Empty(file.Metadata);
            Assert.Equal(tensors.Count, file.Names.Count);
            foreach (var (name, expected) in tensors)
            {
                using var tensor = file.GetTensor(name);
                SafetensorsTestFiles.AssertSameBytes(expected, tensor);
                Assert.Equal(raw[name].Data.ToArray(), file.GetBytes(name).ToArray());
            }
        }
        Safetensors.Save(tensors, torchPath);
        using (var file = SafetensorsFile.Open(torchPath)) Assert.Null(file.Metadata);
    }

    [Fact]
    public void LayoutIsTheReferenceWritersAndTheHeaderIsSpacePaddedToEightBytes()
    {
        var raw = RandomRawTensors(seed: 11);
        // Insertion order must not matter: the same tensors given in another order give the same bytes.
        var reversed = raw.Reverse().ToDictionary(pair => pair.Key, pair => pair.Value);
        string a = files.PathFor("a.safetensors"), b = files.PathFor("b.safetensors");
        Safetensors.Save(raw, a, Metadata);
        Safetensors.Save(reversed, b, Metadata.Reverse().ToDictionary());
        byte[] bytes = File.ReadAllBytes(a);
        Assert.Equal(bytes, File.ReadAllBytes(b));

        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0UL, n % 8);
        string header = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.Equal(header.TrimEnd(' ').Length, header.LastIndexOf('}') + 1);
        Assert.StartsWith("{\"__metadata__\":{\"\":\"empty key\",\"escapes\":\"\\\"quoted\\\" \\\\ back\\nslash\\ttab\\u0001\",", header);

        // Keys in data order: descending dtype rank, then name; offsets contiguous from 0; every torch type aligned.
        using var json = JsonDocument.Parse(header);
        var entries = json.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__").ToList();
        var expected = raw.OrderByDescending(p => SafetensorsDtype.All.ToList().IndexOf(p.Value.Dtype))
            .ThenBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key);
        Assert.Equal(expected, entries.Select(e => e.Name));
        long cursor = 0;
        foreach (var entry in entries)
        {
            long begin = entry.Value.GetProperty("data_offsets")[0].GetInt64(), end = entry.Value.GetProperty("data_offsets")[1].GetInt64();
            Assert.Equal(cursor, begin);
            var dtype = SafetensorsDtype.TryParse(entry.Value.GetProperty("dtype").GetString()!)!;
            if (dtype.BitSize >= 8) Assert.Equal(0, (8 + (long)n + begin) % (dtype.BitSize / 8));
            cursor = end;
        }
        Assert.Equal(bytes.Length, 8 + (long)n + cursor);
        Assert.Empty(Directory.GetFiles(files.Directory, "*.tmp-*"));
    }

    [Fact]
    public void TensorsAreWrittenByValueWhateverTheirLayoutInMemory()
    {
        using var scope = torch.NewDisposeScope();
        var generator = new torch.Generator(3);
        Tensor matrix = torch.randn([4, 6], generator: generator);
        Tensor complex = torch.randn([3], dtype: ScalarType.ComplexFloat32, generator: generator);
        var tensors = new Dictionary<string, Tensor>
        {
            ["transposed"] = matrix.t(),
            ["narrowed"] = matrix.narrow(1, 2, 3),
            ["strided"] = matrix[.., TensorIndex.Slice(0, 6, 2)],
            ["expanded"] = torch.arange(3, dtype: ScalarType.Int32).expand(2, 3),
            ["conjugated"] = complex.conj(),
            ["negated_view"] = complex.conj().imag,
            ["grad"] = torch.ones(2, requires_grad: true),
        };
        string path = files.PathFor("layouts.safetensors");
        Safetensors.Save(tensors, path);
        using var file = SafetensorsFile.Open(path);
        foreach (var (name, expected) in tensors)
        {
            using var actual = file.GetTensor(name);
            Assert.True(actual.is_contiguous());
            Tensor resolved = expected.detach().resolve_conj().resolve_neg().contiguous();
            SafetensorsTestFiles.AssertSameBytes(resolved, actual);
            Assert.True(resolved.Equals(actual), name);
        }
    }

    [Fact]
    public void LoadReturnsOwnedTensorsThatOutliveTheFileAndItsMapping()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["weight"] = torch.arange(12, dtype: ScalarType.Float32).reshape(3, 4),
            ["bias"] = torch.tensor(new double[] { 0.5, -0.25 }),
            ["step"] = torch.tensor(7L),
        };
        string path = files.PathFor("load.safetensors");
        Safetensors.Save(tensors, path);
        var loaded = Safetensors.Load(path, torch.CPU);
        File.Delete(path);
        // The mapping outlives the file's name and the SafetensorsFile that Load opened and closed.
        Assert.Equal(tensors.Keys.Order(), loaded.Keys.Order());
        foreach (var (name, tensor) in loaded)
        {
            Assert.True(tensors[name].Equals(tensor), name);
            tensor.Dispose();
        }
    }

    [Fact]
    public void ZeroCopyViewsShareTheMappingCopyOnWriteAndOutliveTheFile()
    {
        string path = files.PathFor("views.safetensors");
        using (var source = torch.arange(6, dtype: ScalarType.Float32))
            Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = source }, path);
        byte[] onDisk = File.ReadAllBytes(path);

        Tensor view;
        using (var file = SafetensorsFile.Open(path))
        {
            Assert.True(file.IsZeroCopy("x"));
            view = file.GetTensor("x");
            using var again = file.GetTensor("x");
            view.add_(100);
            // Both are views of one mapping: the write shows through the other, and never reaches the file.
            Assert.Equal(100f, again[0].item<float>());
        }
        Assert.Equal(onDisk, File.ReadAllBytes(path));
        Assert.Equal(105f, view[5].item<float>());

        // Replacing the file (write to a temporary, rename) leaves the old mapping intact.
        using (var other = torch.zeros(6, dtype: ScalarType.Float32))
            Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = other }, path);
        Assert.Equal(101f, view[1].item<float>());
        view.Dispose();
        using var reread = SafetensorsFile.Open(path);
        using var zeros = reread.GetTensor("x");
        Assert.Equal(0f, zeros.sum().item<float>());
    }

    [Fact]
    public void MisalignedDataIsCopiedWithTheSameValues()
    {
        // A header of 13 bytes puts the data at file offset 21: an F32 there cannot be a view, so it is a copy.
        string path = files.Craft("misaligned.safetensors", "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}".PadRight(61),
            [.. BitConverter.GetBytes(1.5f), .. BitConverter.GetBytes(-2f)]);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal(69, file.DataStart);
        Assert.False(file.IsZeroCopy("x"));
        using var x = file.GetTensor("x");
        x.add_(1);
        using var again = file.GetTensor("x");
        Assert.Equal(new[] { 1.5f, -2f }, again.data<float>().ToArray());
        Assert.Equal(new[] { 2.5f, -1f }, x.data<float>().ToArray());
    }

    [Fact]
    public void TensorsJoinTheCallersDisposeScopeAndTheFileDoesNot()
    {
        string path = files.PathFor("scope.safetensors");
        using (var source = torch.ones(3))
            Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = source }, path);
        Tensor inScope;
        SafetensorsFile file;
        using (var scope = torch.NewDisposeScope())
        {
            file = SafetensorsFile.Open(path);
            inScope = file.GetTensor("x");
        }
        // The scope took the tensor it saw made, but not the file's own mapping tensor.
        Assert.True(inScope.IsInvalid);
        using (file)
        using (var after = file.GetTensor("x"))
            Assert.Equal(3f, after.sum().item<float>());
    }

    [Fact]
    public void SaveRefusesWhatTheFormatCannotHold()
    {
        using var scope = torch.NewDisposeScope();
        string path = files.PathFor("refused.safetensors");
        void Refused(string fault, Action save) => Assert.Contains(fault, Assert.Throws<SafetensorsException>(save).Message);

        Refused("'__metadata__' is reserved", () => Safetensors.Save(new Dictionary<string, Tensor> { ["__metadata__"] = torch.ones(1) }, path));
        Refused("ComplexFloat64, which safetensors has no dtype for",
            () => Safetensors.Save(new Dictionary<string, Tensor> { ["z"] = torch.ones(1, dtype: ScalarType.ComplexFloat64) }, path));
        Refused("3 bytes given but U16 [2] needs 4",
            () => Safetensors.Save(new Dictionary<string, SafetensorsRawTensor> { ["u"] = new(SafetensorsDtype.U16, [2], new byte[3]) }, path));
        Refused("F4 [3] is 12 bits, not a whole number of bytes",
            () => Safetensors.Save(new Dictionary<string, SafetensorsRawTensor> { ["f"] = new(SafetensorsDtype.F4, [3], new byte[2]) }, path));
        Refused("given both as a torch tensor and as raw bytes", () => Safetensors.Save(
            new Dictionary<string, Tensor> { ["x"] = torch.ones(1) },
            new Dictionary<string, SafetensorsRawTensor> { ["x"] = new(SafetensorsDtype.U8, [1], new byte[1]) }, path));
        Refused("not valid Unicode", () => Safetensors.Save(new Dictionary<string, Tensor> { ["bad\ud800"] = torch.ones(1) }, path));
        Refused("cannot write", () => Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = torch.ones(1) }, Path.Combine(files.Directory, "missing",
            "x.safetensors")));
        Assert.False(File.Exists(path));
        Assert.Empty(Directory.GetFiles(files.Directory, "*.tmp-*"));
    }

    [Fact]
    public void AnEmptyFileOfNoTensorsRoundTrips()
    {
        string path = files.PathFor("none.safetensors");
        Safetensors.Save(new Dictionary<string, Tensor>(), path);
        Assert.Equal("0800000000000000" + Convert.ToHexString("{}      "u8), Convert.ToHexString(File.ReadAllBytes(path)));
        using var file = SafetensorsFile.Open(path);
        Assert.Empty(file.Names);
        Assert.Empty(Safetensors.Load(path));
    }
}
