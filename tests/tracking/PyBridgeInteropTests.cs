using System.Collections;
using System.Text.Json;
using Medformer.Runtime;
using Medformer.Tracking.Interop;
using TorchSharp.PyBridge;
using Safetensors = Medformer.Runtime.Safetensors;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Tracking;

/// <summary>
/// TorchSharp.PyBridge (save_py / load_py) against ours: files PyBridge writes (deflated members, a plain dict) import
/// with our bounded reader; files our writer (<see cref="TorchSave"/>, <c>export --format pt</c>) writes load in
/// PyBridge and in PyTorch 1.13, bit for bit, every dtype a state_dict holds.
/// </summary>
public sealed class PyBridgeInteropTests(ITestOutputHelper output) : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-pybridge-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>float32 (a 0-d one and an empty one), float16, bfloat16, float64, int64 past 2³¹, int32, int8, uint8, bool.</summary>
    static List<KeyValuePair<string, Tensor>> Cases()
    {
        Seeding.SeedEverything(11);
        return
        [
            new("layer.weight", randn(5, 7)),
            new("layer.bias", randn(7)),
            new("half", randn(3, 4).to(ScalarType.Float16)),
            new("bf16", randn(2, 3, 2).to(ScalarType.BFloat16)),
            new("double", randn(4).to(ScalarType.Float64)),
            new("steps", tensor(new long[] { 3, -1, 1L << 40, long.MinValue })),
            new("int", tensor(new[] { -7, 0, int.MaxValue })),
            new("int8", tensor(new sbyte[] { -128, 0, 127 })),
            new("byte", tensor(new byte[] { 0, 1, 255 })),
            new("mask", tensor(new[] { true, false, true })),
            new("scalar", tensor(2.5f)),
            new("empty", zeros(0, 3)),
            new("zeros", zeros(64, 64)),
        ];
    }

    static void AssertSame(IEnumerable<KeyValuePair<string, Tensor>> expected, Func<string, Tensor?> actual)
    {
        foreach (var (name, tensor) in expected)
        {
            var other = actual(name);
            Assert.True(other is not null, $"{name} is missing");
            Assert.Equal(tensor.dtype, other.dtype);
            Assert.Equal(tensor.shape, other.shape);
            Assert.True(tensor.contiguous().bytes.SequenceEqual(other.contiguous().bytes), $"{name} differs");
        }
    }

    [Fact]
    public void FilesPyBridgeWritesImportWithOurs()
    {
        using var scope = NewDisposeScope();
        var cases = Cases();
        string path = Path.Combine(folder, "pybridge.pt");
        PyTorchPickler.PickleStateDict(path, new Hashtable(cases.ToDictionary(kv => kv.Key, kv => (object)kv.Value)));
        using var read = StateDictImport.Read(path);
        Assert.Equal("torch.save (zip)", read.Format);
        Assert.Equal(cases.Select(kv => kv.Key).Order(), read.Tensors.Keys.Order());
        AssertSame(cases, name => read.Tensors.GetValueOrDefault(name));
    }

    [Fact]
    public void AModelPyBridgeSavesImportsThroughTheCli()
    {
        Seeding.SeedEverything(3);
        string path = Path.Combine(folder, "model.pth");
        using var model = new MedformerModel(MedformerConfig.Tiny);
        using (no_grad())
            foreach (var parameter in model.parameters()) parameter.normal_();
        model.save_py(path);
        string imported = Path.Combine(folder, "imported");
        var result = Repo.Run(Repo.Cli, ["import", path, "--config", "tiny", "--out", imported], folder, 120,
            new Dictionary<string, string> { ["MEDFORMER_HOME"] = Path.Combine(folder, "home") });
        output.WriteLine(result.Stdout + result.Stderr);
        Assert.Equal(0, result.ExitCode);
        using var back = Checkpoint.Load(imported);
        var own = back.state_dict();
        AssertSame(model.state_dict(), name => own.GetValueOrDefault(name));
    }

    [Fact]
    public void FilesOursWritesLoadInPyBridge()
    {
        using var scope = NewDisposeScope();
        var cases = Cases();
        string path = Path.Combine(folder, "ours.pt");
        TorchSave.Write(path, cases);
        var loaded = PyTorchUnpickler.UnpickleStateDict(path);
        Assert.Equal(cases.Count, loaded.Count);
        AssertSame(cases, name => loaded[name] as Tensor);

        // And a whole model through load_py, PyBridge's own entry point.
        Seeding.SeedEverything(4);
        using var model = new MedformerModel(MedformerConfig.Tiny);
        using (no_grad())
            foreach (var parameter in model.parameters()) parameter.normal_();
        string modelPath = Path.Combine(folder, "model.pt");
        TorchSave.Write(modelPath, model.state_dict());
        using var other = new MedformerModel(MedformerConfig.Tiny);
        other.load_py(modelPath);
        var own = other.state_dict();
        AssertSame(model.state_dict(), name => own.GetValueOrDefault(name));
    }

    [Fact]
    public void FilesOursWritesLoadInPyTorchAndInOurReader()
    {
        using var scope = NewDisposeScope();
        var cases = Cases();
        string path = Path.Combine(folder, "ours.pt"), expected = Path.Combine(folder, "expected.safetensors");
        TorchSave.Write(path, cases);
        Safetensors.Save(cases.ToDictionary(kv => kv.Key, kv => kv.Value), expected);
        var check = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "torch_load_check.py"), path, expected]);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.Equal(0, check.ExitCode);
        using var report = JsonDocument.Parse(check.Stdout);
        Assert.Equal("collections.OrderedDict", report.RootElement.GetProperty("type").GetString());
        Assert.Equal(cases.Select(kv => kv.Key), report.RootElement.GetProperty("keys").EnumerateArray().Select(e => e.GetString()));
        Assert.Equal(cases.Count, report.RootElement.GetProperty("expected").GetInt32());
        Assert.Empty(report.RootElement.GetProperty("differ").EnumerateArray());

        using var read = StateDictImport.Read(path);
        AssertSame(cases, name => read.Tensors.GetValueOrDefault(name));

        // PyBridge's own files load in PyTorch too: what its writer does differently is layout, not content.
        string theirs = Path.Combine(folder, "pybridge.pt");
        PyTorchPickler.PickleStateDict(theirs, new Hashtable(cases.ToDictionary(kv => kv.Key, kv => (object)kv.Value)));
        var theirCheck = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "torch_load_check.py"), theirs, expected]);
        Assert.Equal(0, theirCheck.ExitCode);
        using var theirReport = JsonDocument.Parse(theirCheck.Stdout);
        Assert.Empty(theirReport.RootElement.GetProperty("differ").EnumerateArray());
    }
}
