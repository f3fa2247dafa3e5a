using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>The one strict weight loader: PyTorch's load_state_dict(strict=True) faults, each on one line naming the file.</summary>
public sealed class StrictLoadTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-strict-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Write(string name, Dictionary<string, Tensor> tensors)
    {
        string path = Path.Combine(root, name);
        Safetensors.Save(tensors, path);
        foreach (var tensor in tensors.Values) tensor.Dispose();
        return path;
    }

    static Dictionary<string, Tensor> Targets() => new()
    {
        ["weight"] = zeros(3, 2),
        ["bias"] = zeros(3),
    };

    static InvalidDataException Refused(string path, Dictionary<string, Tensor> targets, Func<string, bool>? mayBeMissing = null)
    {
        var e = Assert.Throws<InvalidDataException>(() => StrictLoad.Load(path, targets, "the layer", mayBeMissing));
        Assert.StartsWith($"{path}: cannot load into the layer: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        // Nothing was written: the header is checked whole before any copy.
        Assert.All(targets.Values, t => Assert.Equal(0, t.abs().sum().item<float>()));
        return e;
    }

    [Fact]
    public void AWholeFileLoadsEveryTarget()
    {
        string path = Write("whole.safetensors", new() { ["weight"] = ones(3, 2), ["bias"] = ones(3) * 2 });
        var targets = Targets();
        Assert.Empty(StrictLoad.Load(path, targets, "the layer"));
        Assert.Equal(6, targets["weight"].sum().item<float>());
        Assert.Equal(6, targets["bias"].sum().item<float>());
    }

    [Fact]
    public void AMissingKeyIsNamedWithTheFile()
    {
        string path = Write("missing.safetensors", new() { ["weight"] = ones(3, 2) });
        var e = Refused(path, Targets());
        Assert.EndsWith("missing key(s) 'bias'", e.Message);
    }

    [Fact]
    public void AMissingKeyTheCallerAllowsKeepsItsValueAndIsReturned()
    {
        string path = Write("allowed.safetensors", new() { ["weight"] = ones(3, 2) });
        var targets = Targets();
        Assert.Equal(["bias"], StrictLoad.Load(path, targets, "the layer", key => key == "bias"));
        Assert.Equal(6, targets["weight"].sum().item<float>());
        Assert.Equal(0, targets["bias"].sum().item<float>());
    }

    [Fact]
    public void AnUnexpectedKeyIsNamedWithTheFile()
    {
        string path = Write("unexpected.safetensors", new() { ["weight"] = ones(3, 2), ["bias"] = ones(3), ["extra.scale"] = ones(1) });
        var e = Refused(path, Targets());
        Assert.EndsWith("unexpected key(s) 'extra.scale'", e.Message);
    }

    [Fact]
    public void AShapeMismatchNamesTheKeyAndBothShapes()
    {
        string path = Write("shape.safetensors", new() { ["weight"] = ones(4, 2), ["bias"] = ones(3) });
        var e = Refused(path, Targets());
        Assert.EndsWith("size mismatch for 'weight': [4, 2] in the checkpoint but [3, 2] in the layer", e.Message);
    }

    [Fact]
    public void FaultsComeInPyTorchsOrderOnOneLine()
    {
        string path = Write("all.safetensors", new() { ["weight"] = ones(4, 2), ["running"] = ones(1) });
        var e = Refused(path, Targets());
        Assert.EndsWith("missing key(s) 'bias'; unexpected key(s) 'running'; size mismatch for 'weight': [4, 2] in the checkpoint but [3, 2] in the layer",
            e.Message);
    }

    [Fact]
    public void ManyKeysAreCounted()
    {
        var targets = Enumerable.Range(0, 20).ToDictionary(i => $"w{i}", _ => zeros(1));
        string path = Write("many.safetensors", new() { ["w0"] = ones(1) });
        var e = Refused(path, targets);
        Assert.EndsWith("'w8' and 11 more", e.Message);
    }

    [Fact]
    public void FloatingDtypesConvertAsCopyDoes()
    {
        using var values = tensor(new float[] { 1.5f, -2.25f, 3f, 0.5f, 8f, -1f }).reshape(3, 2);
        string path = Write("bf16.safetensors", new() { ["weight"] = values.to(ScalarType.BFloat16), ["bias"] = ones(3, dtype: ScalarType.Float64) });
        var targets = Targets();
        StrictLoad.Load(path, targets, "the layer");
        Assert.Equal(ScalarType.Float32, targets["weight"].dtype);
        Assert.True(targets["weight"].allclose(values, rtol: 0, atol: 0));
        Assert.Equal(3, targets["bias"].sum().item<float>());
    }

    [Fact]
    public void AnIntegerTensorIntoAFloatingTargetIsADtypeMismatch()
    {
        string path = Write("int.safetensors", new() { ["weight"] = ones(3, 2, dtype: ScalarType.Int64), ["bias"] = ones(3) });
        var e = Refused(path, Targets());
        Assert.EndsWith("dtype mismatch for 'weight': I64 in the checkpoint but Float32 in the layer", e.Message);
    }

    [Fact]
    public void ADtypeWithoutATorchTypeIsNamed()
    {
        string path = Path.Combine(root, "f8.safetensors");
        Safetensors.Save(new Dictionary<string, SafetensorsRawTensor>
        {
            ["weight"] = new(SafetensorsDtype.F8_E8M0, [3, 2], new byte[6]),
            ["bias"] = new(SafetensorsDtype.F32, [3], new byte[12]),
        }, path);
        var e = Refused(path, Targets());
        Assert.EndsWith("dtype mismatch for 'weight': F8_E8M0 in the checkpoint has no torch dtype", e.Message);
    }

    [Fact]
    public void AMissingFileIsNamed()
    {
        string path = Path.Combine(root, "absent.safetensors");
        var e = Assert.Throws<InvalidDataException>(() => StrictLoad.Load(path, Targets(), "the layer"));
        Assert.Equal($"{path}: no such file (the weights of the layer)", e.Message);
    }
}
