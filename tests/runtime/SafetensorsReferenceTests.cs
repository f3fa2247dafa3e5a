using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>
/// Cross-checks with tests/reference/safetensors_spec.py, a reader and writer written from the spec in Python with
/// Debian's PyTorch: its files read here with exact values, and ours pass its validation with exact values.
/// </summary>
public sealed class SafetensorsReferenceTests : IDisposable
{
    readonly SafetensorsTestFiles files = new();

    public void Dispose() => files.Dispose();

    [Fact]
    public void FilesWrittenByTheReferenceReadBackExactly()
    {
        JsonElement manifests = SafetensorsTestFiles.RunReference("write", files.Directory);
        Assert.Equal(2, manifests.GetArrayLength());
        int copies = 0, views = 0;
        foreach (JsonElement manifest in manifests.EnumerateArray())
        {
            using var scope = torch.NewDisposeScope();
            using var file = SafetensorsFile.Open(manifest.GetProperty("path").GetString()!);
            Assert.Equal(8 + manifest.GetProperty("header_length").GetInt64(), file.DataStart);
            var metadata = manifest.GetProperty("metadata").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
            Assert.Equal(metadata, file.Metadata);
            JsonElement tensors = manifest.GetProperty("tensors");
            Assert.Equal(tensors.EnumerateObject().Select(t => t.Name).Order(StringComparer.Ordinal), file.Names.Order(StringComparer.Ordinal));
            foreach (JsonProperty entry in tensors.EnumerateObject())
            {
                string name = entry.Name;
                JsonElement expected = entry.Value;
                var info = file.Info(name);
                Assert.Equal(expected.GetProperty("dtype").GetString(), info.Dtype.Name);
                Assert.Equal(expected.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()), info.Shape);
                Assert.Equal(expected.GetProperty("data_offsets")[0].GetInt64(), info.Begin);
                Assert.Equal(expected.GetProperty("data_offsets")[1].GetInt64(), info.End);
                string hex = expected.GetProperty("hex").GetString()!;
                Assert.Equal(hex, Convert.ToHexStringLower(file.GetBytes(name)));
                Assert.Equal(hex, Convert.ToHexStringLower(SafetensorsTestFiles.Bytes(file.GetRawTensor(name))));
                if (!info.Dtype.IsTorchType)
                {
                    Assert.Equal(JsonValueKind.Null, expected.GetProperty("values").ValueKind);
                    Assert.Throws<SafetensorsException>(() => file.GetTensor(name));
                    continue;
                }
                if (info.ByteLength > 0) _ = file.IsZeroCopy(name) ? views++ : copies++;
                Tensor tensor = file.GetTensor(name);
                Assert.Equal(info.Dtype.ScalarType, tensor.dtype);
                Assert.Equal(info.Shape, tensor.shape);
                Assert.Equal(hex, Convert.ToHexStringLower(SafetensorsTestFiles.Bytes(tensor)));
                SafetensorsTestFiles.AssertValues(expected.GetProperty("values"), tensor, name);
            }
        }
        // The reference lays data out by name, so both the view and the copy path were taken.
        Assert.True(views > 0 && copies > 0, $"{views} views, {copies} copies");
    }

    [Fact]
    public void FilesWrittenHerePassTheReferenceWithExactValues()
    {
        using var scope = torch.NewDisposeScope();
        float inf = float.PositiveInfinity, nan = float.NaN;
        float[] floats = [0f, -0f, 1f, -1.5f, 3.140625f, 65504f, 6.1035156e-05f, 5.9604645e-08f, inf, -inf, nan, 1e-3f, float.Epsilon, float.MaxValue, 0.1f];
        var tensors = new Dictionary<string, Tensor>
        {
            ["bool"] = torch.tensor(new[] { true, false, true, true, false }),
            ["u8"] = torch.tensor(new byte[] { 0, 1, 127, 128, 255 }),
            ["i8"] = torch.tensor(new sbyte[] { -128, -1, 0, 1, 127 }),
            ["i16"] = torch.tensor(new short[] { -32768, -1, 0, 32767 }).reshape(2, 2),
            ["i32"] = torch.tensor(new[] { int.MinValue, -7, 0, int.MaxValue }),
            ["i64"] = torch.tensor(new[] { long.MinValue, -3, 0, 9007199254740993L, long.MaxValue }),
            ["f16"] = torch.tensor(floats).to_type(ScalarType.Float16),
            ["bf16"] = torch.tensor(floats).to_type(ScalarType.BFloat16),
            ["f32"] = torch.tensor(floats).reshape(3, 5),
            ["f64"] = torch.tensor(new[] { 0.0, -0.0, double.MaxValue, double.Epsilon, double.NaN, double.NegativeInfinity, 0.1 }),
            ["c64"] = torch.tensor(new float[] { 1.5f, -2f, 0f, -0f, inf, nan, 0.1f, 1e-40f }).view(4, 2).view_as_complex(),
            ["scalar"] = torch.tensor(2.5f),
            ["empty"] = torch.zeros([2, 0, 3], dtype: ScalarType.BFloat16),
            ["transposed"] = torch.arange(6, dtype: ScalarType.Int64).reshape(2, 3).t(),
            ["ünïcode ✓"] = torch.ones(1, dtype: ScalarType.Float64),
        };
        var raw = new Dictionary<string, SafetensorsRawTensor>
        {
            ["raw_u16"] = new(SafetensorsDtype.U16, [3], new byte[] { 0, 0, 1, 0, 0xFF, 0xFF }),
            ["raw_u64"] = new(SafetensorsDtype.U64, [1], Enumerable.Repeat((byte)0xFF, 8).ToArray()),
            ["raw_f8_e4m3"] = new(SafetensorsDtype.F8_E4M3, [2, 2], new byte[] { 0x00, 0x38, 0x7E, 0xFF }),
            ["raw_f4"] = new(SafetensorsDtype.F4, [4], new byte[] { 0x21, 0xF7 }),
            ["raw_f6"] = new(SafetensorsDtype.F6_E3M2, [4], new byte[] { 0xAB, 0xCD, 0xEF }),
        };
        var metadata = new Dictionary<string, string> { ["format"] = "pt", ["note"] = "naïve — \"quoted\" \\ back\nslash" };
        string path = files.PathFor("ours.safetensors");
        Safetensors.Save(tensors, raw, path, metadata);

        JsonElement manifest = SafetensorsTestFiles.RunReference("read", path)[0];
        Assert.True(manifest.GetProperty("padded").GetBoolean());
        Assert.Equal(metadata, manifest.GetProperty("metadata").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!));
        var expectedOrder = tensors.Select(p => (p.Key, Dtype: SafetensorsDtype.FromScalarType(p.Value.dtype)!))
            .Concat(raw.Select(p => (p.Key, p.Value.Dtype)))
            .OrderByDescending(p => SafetensorsDtype.All.ToList().IndexOf(p.Dtype))
            .ThenBy(p => p.Key, StringComparer.Ordinal)
            .Select(p => p.Key);
        Assert.Equal(expectedOrder, manifest.GetProperty("order").EnumerateArray().Select(n => n.GetString()));

        JsonElement read = manifest.GetProperty("tensors");
        foreach (var (name, tensor) in tensors)
        {
            JsonElement entry = read.GetProperty(name);
            Assert.Equal(SafetensorsDtype.FromScalarType(tensor.dtype)!.Name, entry.GetProperty("dtype").GetString());
            Assert.Equal(tensor.shape, entry.GetProperty("shape").EnumerateArray().Select(d => d.GetInt64()));
            Assert.Equal(Convert.ToHexStringLower(SafetensorsTestFiles.Bytes(tensor)), entry.GetProperty("hex").GetString());
            SafetensorsTestFiles.AssertValues(entry.GetProperty("values"), tensor, name);
        }
        foreach (var (name, tensor) in raw)
        {
            JsonElement entry = read.GetProperty(name);
            Assert.Equal(tensor.Dtype.Name, entry.GetProperty("dtype").GetString());
            Assert.Equal(Convert.ToHexStringLower(tensor.Data.Span), entry.GetProperty("hex").GetString());
        }
    }
}
