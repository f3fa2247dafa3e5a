using System.Diagnostics;
using System.Text.RegularExpressions;
using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static Medformer.Tests.Datasets.NiftiTestFiles;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Random damage, with a fixed seed, to valid files (a NIfTI-1 of ours, nibabel's NIfTI-1 with an extension, its
/// big-endian NIfTI-2 and its RGB24), plain and gzipped: each mutant either reads, with no more voxels than the file
/// has bytes, or is refused with <see cref="InvalidDataException"/> or <see cref="NotSupportedException"/> naming
/// the file; no other exception, no crash, no hang. 2,000 mutants by default, 50,000 with MEDFORMER_FULL_TESTS=1.
/// </summary>
public sealed class NiftiFuzzTests(ITestOutputHelper output) : IDisposable
{
    readonly NiftiTestFiles files = new();

    public void Dispose() => files.Dispose();

    static int Mutants => Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 50_000 : 2_000;

    /// <summary>A header field to aim at: offset, width in bytes, and whether it holds a float.</summary>
    readonly record struct Field(int Offset, int Width, bool Float);

    sealed record Base(string Name, byte[] Plain, bool BigEndian, Field[] Fields);

    [Fact]
    public void MutantsReadWithinBoundsOrAreRefused()
    {
        var bases = Bases();
        var random = new Random(20_261_123);
        int read = 0, refused = 0, unsupported = 0;
        long worstAllocation = 0;
        var faults = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        var slowest = new List<(double, string)>();
        for (int i = 0; i < Mutants; i++)
        {
            var source = bases[random.Next(bases.Length)];
            bool gz = random.Next(2) == 0;
            var (plain, how) = Mutate(source, random);
            byte[] file = gz ? Gzip(plain) : plain;
            long available = plain.Length;
            if (gz && random.Next(3) == 0)
            {
                // Damage to the compressed stream itself.
                file = (byte[])file.Clone();
                how += "; then " + MutateCompressed(ref file, random);
                available = file.LongLength * 1032;
            }
            string path = files.PathFor(gz ? "mutant.nii.gz" : "mutant.nii");
            File.WriteAllBytes(path, file);
            long before = GC.GetAllocatedBytesForCurrentThread();
            var started = clock.Elapsed;
            try
            {
                using var scope = NewDisposeScope();
                _ = NiftiReader.ReadHeader(path);
                using var volume = NiftiReader.Read(path);
                Assert.True(volume.Voxels.numel() <= available, $"mutant {i} ({how}): {volume.Voxels.numel()} voxels from {available} bytes");
                Assert.Equal(4, volume.Affine.GetLength(0));
                Assert.InRange(volume.Spacing.Length, 1, 3);
                Assert.NotEmpty(volume.Header);
                read++;
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                Assert.True(e.Message.StartsWith(path + ": ", StringComparison.Ordinal),
                    $"mutant {i} ({how}): the message does not name the file: {e.Message}");
                if (e is NotSupportedException) unsupported++;
                else refused++;
                string kind = Regex.Replace(Regex.Replace(e.Message[(path.Length + 2)..], "\"[^\"]*\"", "\"…\""), "-?[0-9][0-9.E+-]*", "N");
                kind = kind.Length > 90 ? kind[..90] : kind;
                faults[kind] = faults.GetValueOrDefault(kind) + 1;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} ({how}) threw {e.GetType().Name}, not InvalidDataException or NotSupportedException: {e.Message}");
            }
            long managed = GC.GetAllocatedBytesForCurrentThread() - before;
            worstAllocation = Math.Max(worstAllocation, managed);
            slowest.Add(((clock.Elapsed - started).TotalMilliseconds, $"mutant {i} ({how})"));
            // Work bounded by the file, not by what its header claims: managed memory, not time, which load would stretch.
            Assert.True(managed < 64L * file.Length + (8 << 20), $"mutant {i} ({how}) allocated {managed:N0} bytes for a file of {file.Length:N0}");
        }
        output.WriteLine($"{Mutants} mutants in {clock.Elapsed.TotalSeconds:F1} s: {read} read, {refused} refused as invalid, {unsupported} as unsupported; " +
            $"most managed memory for one: {worstAllocation / 1024} KiB");
        foreach (var (ms, what) in slowest.OrderByDescending(p => p.Item1).Take(5)) output.WriteLine($"  {ms:F1} ms {what}");
        foreach (var (kind, count) in faults.OrderByDescending(p => p.Value).Take(25)) output.WriteLine($"  {count,6}  {kind}");
        Assert.True(read > 0 && refused > 0 && unsupported > 0);
        Assert.True(worstAllocation < 16 << 20, $"a mutant made the reader allocate {worstAllocation} managed bytes");
    }

    Base[] Bases()
    {
        string ours = files.PathFor("ours.nii");
        using (var voxels = arange(60, dtype: ScalarType.Int16).reshape(3, 4, 5))
        {
            var affine = new double[,] { { 0, 0, -2, 10 }, { 1.5, 0, 0, -4 }, { 0, 1, 0, 3 }, { 0, 0, 0, 1 } };
            NiftiWriter.Write(ours, voxels, [2, 1, 1.5], affine);
        }
        byte[] scaled = File.ReadAllBytes(ours);
        PutF32(scaled, 112, 0.5);
        PutF32(scaled, 116, -7);
        return
        [
            new("ours (NIfTI-1, scaled)", scaled, false, Nifti1Fields),
            new("nibabel extension.nii", File.ReadAllBytes(Data("nifti/extension.nii")), false, Nifti1Fields),
            new("nibabel be_nifti2_qform.nii", File.ReadAllBytes(Data("nifti/be_nifti2_qform.nii")), true, Nifti2Fields),
            new("nibabel dtype_rgb24.nii", File.ReadAllBytes(Data("nifti/dtype_rgb24.nii")), false, Nifti1Fields),
        ];
    }

    static readonly Field[] Nifti1Fields =
    [
        new(0, 4, false), .. Enumerable.Range(0, 8).Select(i => new Field(40 + 2 * i, 2, false)),
        new(68, 2, false), new(70, 2, false), new(72, 2, false),
        .. Enumerable.Range(0, 8).Select(i => new Field(76 + 4 * i, 4, true)),
        new(108, 4, true), new(112, 4, true), new(116, 4, true), new(123, 1, false),
        new(252, 2, false), new(254, 2, false), new(256, 4, true), new(260, 4, true), new(264, 4, true),
        .. Enumerable.Range(0, 12).Select(i => new Field(280 + 4 * i, 4, true)),
        new(344, 4, false), new(348, 1, false), new(352, 4, false),
    ];

    static readonly Field[] Nifti2Fields =
    [
        new(0, 4, false), new(4, 4, false), new(8, 4, false), new(12, 2, false), new(14, 2, false),
        .. Enumerable.Range(0, 8).Select(i => new Field(16 + 8 * i, 8, false)),
        .. Enumerable.Range(0, 8).Select(i => new Field(104 + 8 * i, 8, true)),
        new(168, 8, false), new(176, 8, true), new(184, 8, true),
        new(344, 4, false), new(348, 4, false), new(352, 8, true), new(360, 8, true), new(368, 8, true),
        .. Enumerable.Range(0, 12).Select(i => new Field(400 + 8 * i, 8, true)),
        new(500, 4, false), new(540, 1, false),
    ];

    static readonly long[] Integers =
    [
        0, 1, -1, 2, 3, 4, 7, 8, 16, 24, 32, 64, 128, 255, 256, 348, 352, 400, 540, 544, 608, 1024, 1280, 1536, 2304,
        short.MaxValue, short.MinValue, ushort.MaxValue, int.MaxValue, int.MinValue, long.MaxValue, long.MinValue,
    ];

    static readonly double[] Floats =
    [
        0, 1, -1, 0.5, 2, 352, 1e-30, 1e30, -1e30, 3e38, double.NaN, double.PositiveInfinity, double.NegativeInfinity,
    ];

    static (byte[] Plain, string How) Mutate(Base source, Random random)
    {
        var bytes = source.Plain.ToList();
        var how = new List<string> { source.Name };
        int rounds = random.Next(4) == 0 ? random.Next(2, 5) : 1;
        for (int r = 0; r < rounds; r++) how.Add(MutateOnce(bytes, source, random));
        return (bytes.ToArray(), string.Join("; ", how));
    }

    static string MutateOnce(List<byte> bytes, Base source, Random random)
    {
        int headerEnd = Math.Min(bytes.Count, source.Fields[^1].Offset + 8);
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
                int at = random.Next(Math.Max(1, headerEnd));
                bytes[at] = (byte)random.Next(256);
                return $"random byte at {at}";
            }
            case 2 or 3 or 4:
            {
                // A header field set to a value chosen to land on a boundary: the arithmetic is where bugs hide.
                var field = source.Fields[random.Next(source.Fields.Length)];
                if (field.Offset + field.Width > bytes.Count) goto case 1;
                var value = new byte[field.Width];
                string what;
                if (field.Float)
                {
                    double v = random.Next(4) == 0 ? (random.NextDouble() - 0.5) * Math.Pow(10, random.Next(-5, 12)) : Floats[random.Next(Floats.Length)];
                    if (field.Width == 4) PutF32(value, 0, v, source.BigEndian);
                    else PutF64(value, 0, v, source.BigEndian);
                    what = v.ToString("G4");
                }
                else
                {
                    long v = random.Next(4) == 0 ? random.NextInt64(-100_000, 100_000) : Integers[random.Next(Integers.Length)];
                    switch (field.Width)
                    {
                        case 1: value[0] = (byte)v; break;
                        case 2: PutI16(value, 0, v, source.BigEndian); break;
                        case 4: PutI32(value, 0, v, source.BigEndian); break;
                        default: PutI64(value, 0, v, source.BigEndian); break;
                    }
                    what = v.ToString();
                }
                for (int i = 0; i < field.Width; i++) bytes[field.Offset + i] = value[i];
                return $"field at {field.Offset} = {what}";
            }
            case 5:
            {
                int length = random.Next(bytes.Count);
                bytes.RemoveRange(length, bytes.Count - length);
                return $"truncated to {length}";
            }
            case 6:
            {
                var extra = new byte[random.Next(1, 33)];
                random.NextBytes(extra);
                bytes.AddRange(extra);
                return $"appended {extra.Length} bytes";
            }
            case 7:
            {
                int at = random.Next(Math.Max(1, headerEnd));
                bytes.Insert(at, (byte)random.Next(256));
                return $"inserted a byte at {at}";
            }
            case 8:
            {
                // Another datatype with its own bitpix: the sizes then disagree with the file, or the type is refused.
                var type = NiftiDatatype.All[random.Next(NiftiDatatype.All.Count)];
                var (datatype, bitpix) = source.Fields == Nifti2Fields ? (12, 14) : (70, 72);
                if (bitpix + 2 > bytes.Count) goto case 1;
                var value = new byte[4];
                PutI16(value, 0, type.Code, source.BigEndian);
                PutI16(value, 2, type.Bitpix, source.BigEndian);
                for (int i = 0; i < 2; i++) (bytes[datatype + i], bytes[bitpix + i]) = (value[i], value[2 + i]);
                return $"datatype {type}";
            }
            default:
            {
                int at = random.Next(Math.Max(1, headerEnd));
                if (at >= bytes.Count) goto case 5;
                bytes.RemoveAt(at);
                return $"deleted byte {at}";
            }
        }
    }

    static string MutateCompressed(ref byte[] file, Random random)
    {
        if (file.Length == 0) return "nothing compressed to damage";  // gzip of no bytes can be no bytes
        switch (random.Next(3))
        {
            case 0:
            {
                int at = random.Next(file.Length), bit = random.Next(8);
                file[at] ^= (byte)(1 << bit);
                return $"flipped compressed bit {bit} of byte {at}";
            }
            case 1:
            {
                int length = random.Next(file.Length);
                file = file[..length];
                return $"compressed stream cut to {length}";
            }
            default:
            {
                int at = random.Next(10, Math.Max(11, file.Length));
                if (at < file.Length) file[at] = (byte)random.Next(256);
                return $"random compressed byte at {at}";
            }
        }
    }
}
