using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>What the safetensors tests share: a scratch directory, hand-made files, the Python reference, comparisons.</summary>
sealed class SafetensorsTestFiles : IDisposable
{
    public string Directory { get; } = Path.Combine(Path.GetTempPath(), $"medformer-safetensors-{Guid.NewGuid():N}");

    public SafetensorsTestFiles() => System.IO.Directory.CreateDirectory(Directory);

    public string PathFor(string name) => Path.Combine(Directory, name);

    public void Dispose()
    {
        try { System.IO.Directory.Delete(Directory, recursive: true); }
        catch (IOException) { }
    }

    /// <summary>A file from its parts: the length field (the header's true length unless overridden), header text, data bytes.</summary>
    public string Craft(string name, string header, byte[]? data = null, ulong? lengthField = null) =>
        CraftBytes(name, Encoding.UTF8.GetBytes(header), data, lengthField);

    public string CraftBytes(string name, byte[] header, byte[]? data = null, ulong? lengthField = null)
    {
        var file = new byte[8 + header.Length + (data?.Length ?? 0)];
        BinaryPrimitives.WriteUInt64LittleEndian(file, lengthField ?? (ulong)header.Length);
        header.CopyTo(file, 8);
        data?.CopyTo(file, 8 + header.Length);
        string path = PathFor(name);
        File.WriteAllBytes(path, file);
        return path;
    }

    /// <summary>Runs tests/reference/safetensors_spec.py with Debian's PyTorch; returns its stdout, failing the test on a non-zero exit.</summary>
    public static JsonElement RunReference(params string[] arguments)
    {
        var start = new ProcessStartInfo("/usr/bin/python3") { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(Path.Combine(RepositoryRoot, "tests", "reference", "safetensors_spec.py"));
        foreach (string argument in arguments) start.ArgumentList.Add(argument);
        using var python = Process.Start(start)!;
        var stderr = python.StandardError.ReadToEndAsync();
        string stdout = python.StandardOutput.ReadToEnd();
        python.WaitForExit();
        Assert.True(python.ExitCode == 0, $"safetensors_spec.py {string.Join(' ', arguments)} exited {python.ExitCode}: {stderr.Result}");
        return JsonDocument.Parse(stdout).RootElement.Clone();
    }

    static string RepositoryRoot
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
                if (File.Exists(Path.Combine(dir.FullName, "Medformer.sln"))) return dir.FullName;
            throw new InvalidOperationException($"no Medformer.sln above {AppContext.BaseDirectory}");
        }
    }

    /// <summary>A tensor's elements as stored: row-major, little-endian.</summary>
    public static byte[] Bytes(Tensor tensor)
    {
        using var contiguous = tensor.contiguous();
        return contiguous.bytes.ToArray();
    }

    public static void AssertSameBytes(Tensor expected, Tensor actual)
    {
        Assert.Equal(expected.dtype, actual.dtype);
        Assert.Equal(expected.shape, actual.shape);
        Assert.Equal(Convert.ToHexString(Bytes(expected)), Convert.ToHexString(Bytes(actual)));
    }

    /// <summary>
    /// The values as the reference prints them, flattened, each exact: integers and booleans as long, floats widened
    /// to double (exact from f16, bf16 and f32), complex as (re, im); compared by bits so -0.0 and NaN count too.
    /// </summary>
    public static void AssertValues(JsonElement expected, Tensor actual, string name)
    {
        using var scope = torch.NewDisposeScope();
        string[] strings = expected.EnumerateArray()
            .SelectMany(v => v.ValueKind == JsonValueKind.Array ? v.EnumerateArray().Select(p => p.GetString()!) : [v.GetString()!])
            .ToArray();
        if (actual.is_floating_point() || actual.is_complex())
        {
            Tensor real = actual.is_complex() ? torch.view_as_real(actual) : actual;
            double[] values = real.numel() == 0 ? [] : real.to_type(ScalarType.Float64).contiguous().data<double>().ToArray();
            Assert.Equal(strings.Length, values.Length);
            for (int i = 0; i < values.Length; i++)
            {
                double want = ParseDouble(strings[i]);
                bool same = double.IsNaN(want) ? double.IsNaN(values[i]) : BitConverter.DoubleToInt64Bits(want) == BitConverter.DoubleToInt64Bits(values[i]);
                Assert.True(same, $"{name}[{i}]: expected {strings[i]}, got {values[i].ToString("R", CultureInfo.InvariantCulture)}");
            }
        }
        else
        {
            // TorchSharp's accessor cannot copy out an empty tensor.
            long[] values = actual.numel() == 0 ? [] : actual.to_type(ScalarType.Int64).contiguous().data<long>().ToArray();
            Assert.Equal(strings.Select(s => long.Parse(s, CultureInfo.InvariantCulture)), values);
        }
    }

    static double ParseDouble(string text) => text switch
    {
        "inf" => double.PositiveInfinity,
        "-inf" => double.NegativeInfinity,
        "nan" => double.NaN,
        _ => double.Parse(text, CultureInfo.InvariantCulture),
    };

    /// <summary>The exception a malformed file must raise: ours, naming the file, with the fault in its message.</summary>
    public static SafetensorsException AssertRefused(string path, string fault, Action<string> open)
    {
        var error = Assert.Throws<SafetensorsException>(() => open(path));
        Assert.Contains(path, error.Message);
        Assert.Contains(fault, error.Message);
        return error;
    }

    public static void OpenAndRead(string path)
    {
        using var file = SafetensorsFile.Open(path);
        foreach (string name in file.Names)
            if (file.Info(name).Dtype.IsTorchType)
                file.GetTensor(name).Dispose();
    }
}
