using System.Text;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>Malformed files are refused with a <see cref="SafetensorsException"/> naming the file and the fault.</summary>
public sealed class SafetensorsMalformedTests : IDisposable
{
    readonly SafetensorsTestFiles files = new();

    public void Dispose() => files.Dispose();

    const string F32x1 = "\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]";

    [Theory]
    [InlineData("{\"a\":", 0, "header is not valid JSON")]
    [InlineData("{\"a\":{" + F32x1 + "},}", 4, "header is not valid JSON")]
    [InlineData("[1,2]", 0, "header does not begin with '{' (first byte is 0x5B)")]
    [InlineData(" {}", 0, "header does not begin with '{' (first byte is 0x20)")]
    [InlineData("{}x", 0, "header is not valid JSON")]
    [InlineData("{} {}", 0, "header is not valid JSON")]
    [InlineData("{}\0\0\0\0\0\0", 0, "header is not valid JSON")]
    [InlineData("{/* note */}", 0, "header is not valid JSON")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[NaN],\"data_offsets\":[0,4]}}", 4, "header is not valid JSON")]
    [InlineData("{\"\\ud800\":{" + F32x1 + "}}", 4, "header is not valid JSON")]
    [InlineData("{\"a\":{" + F32x1 + "},\"a\":{" + F32x1 + "}}", 4, "duplicate key 'a' in header")]
    [InlineData("{\"a\":{" + F32x1 + "},\"\\u0061\":{" + F32x1 + "}}", 4, "duplicate key 'a' in header")]
    [InlineData("{\"a\":{\"dtype\":\"F32\"," + F32x1 + "}}", 4, "tensor 'a': duplicate field 'dtype'")]
    [InlineData("{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate key 'k' in __metadata__")]
    [InlineData("{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate key '__metadata__' in header")]
    [InlineData("{\"__metadata__\":{\"k\":1}}", 0, "__metadata__ value for 'k' is a number (1), not a string")]
    [InlineData("{\"__metadata__\":{\"k\":[\"v\"]}}", 0, "__metadata__ value for 'k' is an array, not a string")]
    [InlineData("{\"__metadata__\":{\"k\":null}}", 0, "__metadata__ value for 'k' is null, not a string")]
    [InlineData("{\"__metadata__\":\"x\"}", 0, "__metadata__ is a string ('x'), not an object of strings")]
    [InlineData("{\"__metadata__\":null}", 0, "__metadata__ is null, not an object of strings")]
    [InlineData("{\"a\":5}", 0, "tensor 'a': entry is a number (5), not an object")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "tensor 'a': missing data_offsets")]
    [InlineData("{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': missing dtype")]
    [InlineData("{\"a\":{" + F32x1 + ",\"extra\":1}}", 4, "tensor 'a': unknown field 'extra'")]
    [InlineData("{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': unknown dtype 'F17'")]
    [InlineData("{\"a\":{\"dtype\":\"f32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': unknown dtype 'f32'")]
    [InlineData("{\"a\":{\"dtype\":32,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': dtype is a number (32), not a string")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":{},\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape is an object, not an array")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape[0] is -1, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,2.0],\"data_offsets\":[0,8]}}", 8, "tensor 'a': shape[1] is 2.0, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1e2],\"data_offsets\":[0,400]}}", 400, "tensor 'a': shape[0] is 1e2, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4,
        "tensor 'a': shape[0] is a string ('1'), not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[true],\"data_offsets\":[0,4]}}", 4, "tensor 'a': shape[0] is true, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[100000000000000000000000],\"data_offsets\":[0,4]}}", 4,
        "tensor 'a': shape[0] is 100000000000000000000000, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[18446744073709551615],\"data_offsets\":[0,4]}}", 4,
        "tensor 'a': shape[0] is 18446744073709551615, beyond 64-bit signed sizes")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
        "tensor 'a': shape [4294967296, 4294967296, 16] has more elements than 64-bit sizes can count")]
    [InlineData("{\"a\":{\"dtype\":\"U8\",\"shape\":[4294967296,4294967296,0],\"data_offsets\":[0,0]}}", 0, "has more elements than 64-bit sizes can count")]
    [InlineData("{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,4]}}", 4,
        "tensor 'a': F64 [2305843009213693952] has more bits than 64-bit sizes can count")]
    [InlineData("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "tensor 'a': F4 [3] is 12 bits, not a whole number of bytes")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,10]}}", 10, "tensor 'a': data_offsets [0, 10] is 10 bytes but F32 [3] needs 12")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,0]}}", 0, "tensor 'a': data_offsets [0, 0] is 0 bytes but F32 [] needs 4")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,4]}}", 4, "tensor 'a': data_offsets [0, 4] is 4 bytes but F32 [0] needs 0")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8,
        "tensor 'a': data_offsets [0, 16] extend past the end of the data buffer (8 bytes)")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "tensor 'a': data_offsets [8, 4] end before they begin")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0]}}", 4, "tensor 'a': data_offsets has 1 value(s), not 2")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,4]}}", 4, "tensor 'a': data_offsets has more than 2 values")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "tensor 'a': data_offsets[1] is -4, not a non-negative integer")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
        "tensors 'a' and 'b' overlap (data_offsets [0, 8] and [4, 12])")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
        "tensors 'b' and 'a' overlap (data_offsets [0, 8] and [4, 4])")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4,
        "tensors 'a' and 'b' overlap")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12,
        "hole in data buffer at byte 4: bytes 4 to 8 belong to no tensor (next is 'b')")]
    [InlineData("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "hole in data buffer at byte 0")]
    [InlineData("{\"a\":{" + F32x1 + "}}", 8, "hole in data buffer at byte 4: the tensors end there but the data buffer is 8 bytes")]
    [InlineData("{}", 3, "hole in data buffer at byte 0: the tensors end there but the data buffer is 3 bytes")]
    public void MalformedHeaderIsRefused(string header, int dataLength, string fault)
    {
        string path = files.Craft("bad.safetensors", header, new byte[dataLength]);
        SafetensorsTestFiles.AssertRefused(path, fault, p => SafetensorsFile.Open(p).Dispose());
        SafetensorsTestFiles.AssertRefused(path, fault, p => Safetensors.Load(p));
    }

    [Fact]
    public void EmptyAndInvalidUtf8HeadersAreRefused()
    {
        SafetensorsTestFiles.AssertRefused(files.Craft("empty-header.safetensors", ""), "header is empty", SafetensorsTestFiles.OpenAndRead);
        byte[] header = [.. "{\"na"u8, 0xC3, 0x28, .. "\":{}}"u8];
        SafetensorsTestFiles.AssertRefused(files.CraftBytes("utf8.safetensors", header), "header is not valid UTF-8 (at byte 4 of the header)",
            SafetensorsTestFiles.OpenAndRead);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(5)]
    [InlineData(7)]
    public void FileShorterThanTheLengthFieldIsRefused(int length)
    {
        string path = files.PathFor($"short{length}.safetensors");
        File.WriteAllBytes(path, new byte[length]);
        SafetensorsTestFiles.AssertRefused(path, $"file is {length} bytes, shorter than the 8-byte header length field", SafetensorsTestFiles.OpenAndRead);
    }

    [Theory]
    [InlineData(12345678901UL, "header length 12345678901 exceeds file size 4096")]
    [InlineData(ulong.MaxValue, "header length 18446744073709551615 exceeds file size 4096")]
    [InlineData(4089UL, "header length 4089 exceeds file size 4096 (at most 4088 bytes follow the 8-byte length field)")]
    public void HeaderLengthBeyondTheFileIsRefused(ulong lengthField, string fault)
    {
        string path = files.Craft("long.safetensors", "{}".PadRight(4088), lengthField: lengthField);
        SafetensorsTestFiles.AssertRefused(path, fault, SafetensorsTestFiles.OpenAndRead);
    }

    [Fact]
    public void HeaderOverTheHundredMegabyteLimitIsRefusedUnread()
    {
        // A sparse file: the length field is checked before a byte of the header is touched.
        string path = files.Craft("huge.safetensors", "", lengthField: SafetensorsHeader.MaxLength + 1);
        using (var stream = new FileStream(path, FileMode.Open)) stream.SetLength(SafetensorsHeader.MaxLength + 100);
        SafetensorsTestFiles.AssertRefused(path, "header length 100000001 exceeds the limit of 100000000 bytes", SafetensorsTestFiles.OpenAndRead);
    }

    [Fact]
    public void TruncatedFileIsRefusedWhereverItIsCut()
    {
        string path = files.PathFor("whole.safetensors");
        using (var tensor = torch.arange(10, dtype: ScalarType.Float32))
            Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = tensor, ["y"] = tensor }, path);
        byte[] whole = File.ReadAllBytes(path);
        for (int length = 0; length < whole.Length; length++)
        {
            string cut = files.PathFor("cut.safetensors");
            File.WriteAllBytes(cut, whole[..length]);
            var error = Assert.Throws<SafetensorsException>(() => SafetensorsTestFiles.OpenAndRead(cut));
            Assert.Contains(cut, error.Message);
            string expected = length < 8 ? "shorter than the 8-byte header length field"
                : length < whole.Length - 80 ? "exceeds file size"
                : "extend past the end of the data buffer";
            Assert.Contains(expected, error.Message);
        }
    }

    [Fact]
    public void MissingFilesAndDirectoriesAreRefused()
    {
        SafetensorsTestFiles.AssertRefused(files.PathFor("absent.safetensors"), "no such file", SafetensorsTestFiles.OpenAndRead);
        SafetensorsTestFiles.AssertRefused(files.Directory, "is a directory", SafetensorsTestFiles.OpenAndRead);
    }

    [Fact]
    public void BooleansOtherThanZeroAndOneAreRefused()
    {
        string path = files.Craft("bool.safetensors", "{\"b\":{\"dtype\":\"BOOL\",\"shape\":[3],\"data_offsets\":[0,3]}}", [1, 0, 2]);
        using var file = SafetensorsFile.Open(path);
        Assert.Equal([1, 0, 2], file.GetBytes("b").ToArray());
        SafetensorsTestFiles.AssertRefused(path, "tensor 'b': BOOL element 2 is byte 2, neither 0 nor 1", _ => file.GetTensor("b"));
    }

    [Fact]
    public void UnknownNamesAndRawOnlyDtypesAreRefusedAsTensors()
    {
        string path = files.Craft("raw.safetensors", "{\"f8\":{\"dtype\":\"F8_E4M3\",\"shape\":[2],\"data_offsets\":[0,2]}}", [0x38, 0xFF]);
        using var file = SafetensorsFile.Open(path);
        SafetensorsTestFiles.AssertRefused(path, "no tensor 'zz' in the file", _ => file.Info("zz"));
        SafetensorsTestFiles.AssertRefused(path, "no tensor 'zz' in the file", _ => file.GetTensor("zz"));
        SafetensorsTestFiles.AssertRefused(path,
            "tensor 'f8' is F8_E4M3, which TorchSharp has no tensor type for; read its bytes with GetBytes or GetRawTensor",
            _ => file.GetTensor("f8"));
        SafetensorsTestFiles.AssertRefused(path, "tensor 'f8' is F8_E4M3", p => Safetensors.Load(p));
        Assert.Equal([0x38, 0xFF], file.GetBytes("f8").ToArray());
    }

    [Fact]
    public void TensorsBeyondTwoGigabytesAreMappedAndRefusedOnlyAsSpans()
    {
        // A sparse 3 GB file: nothing is read, only mapped.
        const long size = 3_000_000_000;
        string header = $"{{\"big\":{{\"dtype\":\"U8\",\"shape\":[{size}],\"data_offsets\":[0,{size}]}}}}";
        string path = files.Craft("big.safetensors", header);
        using (var stream = new FileStream(path, FileMode.Open)) stream.SetLength(8 + header.Length + size);
        using var file = SafetensorsFile.Open(path);
        SafetensorsTestFiles.AssertRefused(path, "tensor 'big' is 3000000000 bytes, more than a span can hold; use GetRawTensor", _ => file.GetBytes("big"));
        using var raw = file.GetRawTensor("big");
        using var tensor = file.GetTensor("big");
        Assert.Equal(size, raw.numel());
        Assert.Equal([size], tensor.shape);
        Assert.Equal(0, tensor[size - 1].item<byte>());
    }

    [Fact]
    public void ExceptionsNameTheFileAndKeepTheFaultApart()
    {
        string path = files.Craft("fault.safetensors", "{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", new byte[4]);
        var error = Assert.Throws<SafetensorsException>(() => SafetensorsFile.Open(path));
        Assert.Equal(path, error.Path);
        Assert.Equal("tensor 'a': unknown dtype 'F17'", error.Fault);
        Assert.Equal($"{path}: tensor 'a': unknown dtype 'F17'", error.Message);
    }
}
