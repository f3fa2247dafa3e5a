using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>
/// Random damage to a valid file, with a fixed seed: every mutant either opens, with every tensor inside the file and
/// the tensors tiling the data buffer, or is refused with <see cref="SafetensorsException"/>; no other exception,
/// and no crash. 2,000 mutants by default, 100,000 with MEDFORMER_FULL_TESTS=1 (./test.sh --full).
/// </summary>
public sealed class SafetensorsFuzzTests(ITestOutputHelper output) : IDisposable
{
    readonly SafetensorsTestFiles files = new();

    public void Dispose() => files.Dispose();

    static int Mutants => Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 100_000 : 2_000;

    static readonly byte[] Interesting = Encoding.ASCII.GetBytes("{}[]\":,0123456789-+e.\\ ").Concat(new byte[] { 0, 0x7F, 0x80, 0xC3, 0xFF }).ToArray();

    [Fact]
    public void MutatedFilesLoadWithinBoundsOrAreRefused()
    {
        byte[] valid = ValidFile();
        var random = new Random(20_240_601);
        string path = files.PathFor("mutant.safetensors");
        int opened = 0, refused = 0;
        var faults = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < Mutants; i++)
        {
            var (mutant, how) = Mutate(valid, random);
            File.WriteAllBytes(path, mutant);
            try
            {
                CheckWithinBounds(path, mutant.Length);
                opened++;
            }
            catch (SafetensorsException e)
            {
                Assert.Contains(path, e.Message);
                refused++;
                string kind = Regex.Replace(Regex.Replace(e.Fault.Split(" (")[0], "'[^']*'", "'.'"), "(?<![A-Z0-9_])-?[0-9]+", "N");
                kind = kind.StartsWith("header is not valid JSON", StringComparison.Ordinal) ? "header is not valid JSON" : kind;
                faults[kind] = faults.GetValueOrDefault(kind) + 1;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} ({how}) threw {e.GetType().Name}, not SafetensorsException: {e.Message}");
            }
        }
        output.WriteLine($"{Mutants} mutants in {clock.Elapsed.TotalSeconds:F1} s: {opened} opened, {refused} refused");
        foreach (var (kind, count) in faults.OrderByDescending(p => p.Value).Take(20)) output.WriteLine($"  {count,6}  {kind}");
        Assert.True(opened > 0 && refused > 0);
    }

    /// <summary>Opens the mutant and touches every byte it exposes, checking each range lies inside the file.</summary>
    static void CheckWithinBounds(string path, long length)
    {
        using var scope = torch.NewDisposeScope();
        using var file = SafetensorsFile.Open(path);
        long data = length - file.DataStart;
        Assert.True(data >= 0);
        long covered = 0;
        foreach (var info in file.Tensors)
        {
            Assert.True(0 <= info.Begin && info.Begin <= info.End && info.End <= data);
            Assert.Equal(covered, info.Begin);
            covered = info.End;
            byte[] bytes = file.GetBytes(info.Name).ToArray();
            Assert.Equal(info.ByteLength, bytes.LongLength);
            Assert.Equal(bytes, SafetensorsTestFiles.Bytes(file.GetRawTensor(info.Name)));
            if (!info.Dtype.IsTorchType) continue;
            Tensor tensor;
            try
            {
                tensor = file.GetTensor(info.Name);
            }
            catch (SafetensorsException e) when (info.Dtype == SafetensorsDtype.BOOL && e.Fault.Contains("neither 0 nor 1"))
            {
                continue;
            }
            Assert.Equal(info.ElementCount, tensor.numel());
            Assert.Equal(bytes, SafetensorsTestFiles.Bytes(tensor));
        }
        Assert.Equal(data, covered);
    }

    /// <summary>A small file of many dtypes, 0-d, empty and raw tensors, and metadata, as this library writes it.</summary>
    byte[] ValidFile()
    {
        using var scope = torch.NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>
        {
            ["weight"] = torch.arange(12, dtype: ScalarType.Float32).reshape(3, 4),
            ["bias"] = torch.tensor(new double[] { 0.5, -0.25 }),
            ["mask"] = torch.tensor(new[] { true, false, true }),
            ["ids"] = torch.tensor(new long[] { 1, 2, 3 }),
            ["half"] = torch.ones(5, dtype: ScalarType.Float16),
            ["brain"] = torch.ones([2, 2], dtype: ScalarType.BFloat16),
            ["complex"] = torch.ones(2, dtype: ScalarType.ComplexFloat32),
            ["step"] = torch.tensor(7),
            ["empty"] = torch.zeros([0, 3]),
            ["bytes"] = torch.tensor(new byte[] { 9, 8, 7 }),
        };
        var raw = new Dictionary<string, SafetensorsRawTensor>
        {
            ["fp8"] = new(SafetensorsDtype.F8_E4M3, [4], new byte[] { 1, 2, 3, 4 }),
            ["u16"] = new(SafetensorsDtype.U16, [2], new byte[] { 1, 0, 2, 0 }),
            ["fp4"] = new(SafetensorsDtype.F4, [2], new byte[] { 0x21 }),
        };
        string path = files.PathFor("valid.safetensors");
        Safetensors.Save(tensors, raw, path, new Dictionary<string, string> { ["format"] = "pt" });
        return File.ReadAllBytes(path);
    }

    static (byte[] Mutant, string How) Mutate(byte[] valid, Random random)
    {
        var bytes = valid.ToList();
        var how = new List<string>();
        int rounds = random.Next(4) == 0 ? random.Next(2, 5) : 1;
        for (int r = 0; r < rounds; r++) how.Add(MutateOnce(bytes, random));
        return (bytes.ToArray(), string.Join("; ", how));
    }

    static string MutateOnce(List<byte> bytes, Random random)
    {
        int headerEnd = bytes.Count >= 8 ? (int)Math.Min((ulong)bytes.Count, 8 + BinaryPrimitives.ReadUInt64LittleEndian(bytes.Take(8).ToArray())) :
            bytes.Count;
        int InHeader() => headerEnd > 8 ? random.Next(8, headerEnd) : random.Next(Math.Max(bytes.Count, 1));
        if (bytes.Count == 0) { bytes.Add((byte)random.Next(256)); return "grew from nothing"; }
        switch (random.Next(10))
        {
            case 0:
            {
                int at = random.Next(bytes.Count), bit = random.Next(8);
                bytes[at] ^= (byte)(1 << bit);
                return $"flipped bit {bit} of byte {at}";
            }
            case 1:
            {
                int at = InHeader();
                bytes[at] = (byte)random.Next(256);
                return $"random byte at {at}";
            }
            case 2:
            {
                int at = InHeader();
                bytes[at] = Interesting[random.Next(Interesting.Length)];
                return $"'{(char)bytes[at]}' at {at}";
            }
            case 3:
            {
                // Digits are shapes and offsets: changing one keeps the JSON valid and tests the arithmetic.
                var digits = Enumerable.Range(8, Math.Max(0, headerEnd - 8)).Where(i => i < bytes.Count && char.IsAsciiDigit((char)bytes[i])).ToList();
                if (digits.Count == 0) goto case 1;
                int at = digits[random.Next(digits.Count)];
                bytes[at] = (byte)('0' + random.Next(10));
                return $"digit at {at}";
            }
            case 4:
            {
                // Another dtype's name over one in the header: sizes then disagree with the offsets, or don't.
                string header = Encoding.Latin1.GetString(bytes.Skip(8).Take(Math.Max(0, headerEnd - 8)).ToArray());
                int at = header.IndexOf("\"dtype\":\"", random.Next(Math.Max(1, header.Length)), StringComparison.Ordinal);
                if (at < 0) goto case 2;
                int start = at + 9, end = header.IndexOf('"', start);
                if (end < 0) goto case 2;
                string name = random.Next(8) == 0 ? "F17" : SafetensorsDtype.All[random.Next(SafetensorsDtype.All.Count)].Name;
                bytes.RemoveRange(8 + start, end - start);
                bytes.InsertRange(8 + start, Encoding.ASCII.GetBytes(name));
                AdjustLength(bytes, name.Length - (end - start));
                return $"dtype {name} at {8 + start}";
            }
            case 5:
            {
                int length = random.Next(bytes.Count);
                bytes.RemoveRange(length, bytes.Count - length);
                return $"truncated to {length}";
            }
            case 6:
            {
                if (bytes.Count < 8) goto case 7;
                ulong current = BinaryPrimitives.ReadUInt64LittleEndian(bytes.Take(8).ToArray());
                ulong value = random.Next(3) switch
                {
                    0 => (ulong)random.NextInt64() * (ulong)random.Next(1, 3),
                    1 => current + (ulong)random.Next(-16, 17),
                    _ => (ulong)random.Next(bytes.Count + 1),
                };
                var field = new byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(field, value);
                for (int i = 0; i < 8; i++) bytes[i] = field[i];
                return $"length field {value}";
            }
            case 7:
            {
                var extra = new byte[random.Next(1, 33)];
                random.NextBytes(extra);
                bytes.AddRange(extra);
                return $"appended {extra.Length} bytes";
            }
            case 8:
            {
                int at = InHeader();
                bytes.Insert(at, Interesting[random.Next(Interesting.Length)]);
                if (random.Next(2) == 0) AdjustLength(bytes, 1);
                return $"inserted at {at}";
            }
            default:
            {
                int at = InHeader();
                if (at >= bytes.Count) goto case 5;
                bytes.RemoveAt(at);
                if (random.Next(2) == 0) AdjustLength(bytes, -1);
                return $"deleted at {at}";
            }
        }
    }

    static void AdjustLength(List<byte> bytes, int delta)
    {
        if (bytes.Count < 8) return;
        ulong value = BinaryPrimitives.ReadUInt64LittleEndian(bytes.Take(8).ToArray()) + (ulong)(long)delta;
        var field = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(field, value);
        for (int i = 0; i < 8; i++) bytes[i] = field[i];
    }
}
