using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Random damage to real files, with a fixed seed: explicit VR little endian (CT_small; liver_1frame, 1-bit with
/// functional groups; test-SR, sequences five deep), explicit VR big endian (MR_small_bigendian; rtdose_expb, sequences
/// and 32-bit frames) and implicit VR (MR_small_implicit). Every
/// mutant either reads, with an image of sane shape and size, or is refused with InvalidDataException or
/// NotSupportedException naming it; nothing else is thrown, nothing hangs, and nothing allocates beyond a small
/// multiple of the file's size. 2,000 mutants by default, 50,000 with MEDFORMER_FULL_TESTS=1.
/// </summary>
public sealed class DicomFuzzTests(ITestOutputHelper output) : IDisposable
{
    readonly DicomTestFiles files = new();

    public void Dispose() => files.Dispose();

    static int Mutants => Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 50_000 : 2_000;

    static readonly string[] Seeds = ["CT_small.dcm", "MR_small_bigendian.dcm", "rtdose_expb.dcm", "MR_small_implicit.dcm", "liver_1frame.dcm", "test-SR.dcm"];

    /// <summary>Where an element's header and length field lie in a seed file, so mutations can aim at structure.</summary>
    sealed record Site(long Header, long LengthAt, int LengthSize, bool BigEndian, DicomTag Tag, string VR, long Value, long Length);

    sealed record Seed(string Name, byte[] Bytes, Site[] Sites, long PixelOffset);

    static readonly string[] LongVRs = ["OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"];

    static Seed Load(string name)
    {
        var bytes = File.ReadAllBytes(DicomTestFiles.Real(name));
        var file = DicomFile.Read(bytes, name);
        bool explicitVR = file.TransferSyntax.ExplicitVR;
        var sites = file.Elements.Select((e, i) =>
        {
            bool meta = i < file.MetaCount;
            bool wide = (meta || explicitVR) ? LongVRs.Contains(e.VR) : true;
            bool shortForm = (meta || explicitVR) && !wide;
            long header = e.Offset - (shortForm ? 8 : (meta || explicitVR) ? 12 : 8);
            return new Site(header, e.Offset - (shortForm ? 2 : 4), shortForm ? 2 : 4, e.BigEndian, e.Tag, e.VR, e.Offset, e.Length);
        }).ToArray();
        return new Seed(name, bytes, sites, file.PixelData?.Offset ?? bytes.Length);
    }

    [Fact]
    public void MutatedFilesReadSanelyOrAreRefused()
    {
        var seeds = Seeds.Select(Load).ToArray();
        var random = new Random(20_250_601);
        int read = 0, refused = 0, unsupported = 0;
        var faults = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        double slowest = 0;
        string slowestHow = "";
        for (int i = 0; i < Mutants; i++)
        {
            var seed = seeds[i % seeds.Length];
            var (mutant, how) = Mutate(seed, random);
            // Most mutants are read from memory; every fourth through a file, the path the readers use.
            string path = i % 4 == 0 ? files.Write("mutant.dcm", mutant) : $"mutant-{i}.dcm";
            long allocated = GC.GetAllocatedBytesForCurrentThread();
            var started = clock.Elapsed;
            try
            {
                CheckSane(mutant, path, i % 4 == 0);
                read++;
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                Assert.True(e.Message.StartsWith(path + ": ", StringComparison.Ordinal),
                    $"mutant {i} of {seed.Name} ({how}): the message does not name the file: {e.Message}");
                if (e is NotSupportedException) unsupported++; else refused++;
                string kind = Regex.Replace(Regex.Replace(e.Message[(path.Length + 2)..], @"\([0-9A-F]{4},[0-9A-F]{4}\)( [A-Z][A-Za-z]+)?", "(tag)"),
                    @"'[^']*'|-?[0-9]+(\.[0-9]+)?", "N");
                faults[kind] = faults.GetValueOrDefault(kind) + 1;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} of {seed.Name} ({how}) threw {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
            double seconds = (clock.Elapsed - started).TotalSeconds;
            if (seconds > slowest) (slowest, slowestHow) = (seconds, $"mutant {i} of {seed.Name} ({how})");
            long managed = GC.GetAllocatedBytesForCurrentThread() - allocated;
            Assert.True(managed < 64L * mutant.Length + (8 << 20),
                $"mutant {i} of {seed.Name} ({how}) allocated {managed:N0} bytes for a file of {mutant.Length:N0}");
        }
        output.WriteLine($"{Mutants} mutants in {clock.Elapsed.TotalSeconds:F1} s: {read} read, {refused} refused as malformed, {unsupported} as " +
            $"unsupported; slowest {slowest * 1000:F0} ms: {slowestHow}");
        foreach (var (kind, count) in faults.OrderByDescending(p => p.Value).Take(25)) output.WriteLine($"  {count,6}  {kind}");
        Assert.True(read > 0 && refused > 0 && unsupported > 0);
        Assert.True(slowest < 5, $"{slowestHow} took {slowest:F1} s");
    }

    /// <summary>Reads the header, lists it, and reads the image; what comes back must fit the file.</summary>
    static void CheckSane(byte[] mutant, string path, bool onDisk)
    {
        var header = onDisk ? Dicom.ReadHeader(path) : DicomFile.Read(mutant, path);
        Assert.True(header.Elements.Count <= mutant.Length / 8);
        Assert.All(header.Elements, e => Assert.True(e.Value.Length <= DicomElement.MaxLoaded && e.Depth <= 32));
        Assert.NotEmpty(header.Dump());
        using var scope = torch.NewDisposeScope();
        using var volume = onDisk ? Dicom.Read(path) : Dicom.Read(mutant, path);
        var voxels = volume.Voxels;
        Assert.InRange(voxels.dim(), 2, 4);
        Assert.True(voxels.numel() * voxels.element_size() <= 8L * mutant.Length, $"{voxels.numel()} voxels from a file of {mutant.Length} bytes");
        Assert.True(volume.Spacing.Length is 2 or 3 && volume.Spacing.All(s => s > 0 && double.IsFinite(s)));
        Assert.True(volume.Affine.Cast<double>().All(double.IsFinite));
    }

    static readonly byte[] Interesting = Encoding.ASCII.GetBytes("0123456789.-+eE\\ N").Concat(new byte[] { 0, 1, 0x7F, 0x80, 0xFE, 0xFF }).ToArray();
    static readonly string[] VRs = ["SQ", "UN", "OB", "OW", "UT", "US", "UL", "DS", "IS", "FD", "AT", "XX", "\0\0", "sq"];
    static readonly DicomTag[] Tags = [DicomTag.Item, DicomTag.ItemDelimitation, DicomTag.SequenceDelimitation, DicomTag.PixelData, DicomTag.Rows, new(0x0002,
        0x0010), new(0x0009, 0x0010), new(0xFFFF, 0xFFFF)];
    static readonly DicomTag[] ImageTags = [DicomTag.Rows, DicomTag.Columns, DicomTag.BitsAllocated, DicomTag.BitsStored, DicomTag.HighBit,
        DicomTag.PixelRepresentation, DicomTag.SamplesPerPixel, DicomTag.PlanarConfiguration];
    static readonly string[] Syntaxes = [DicomTransferSyntax.ImplicitVRLittleEndianUid, DicomTransferSyntax.ExplicitVRLittleEndianUid,
        DicomTransferSyntax.ExplicitVRBigEndianUid,
        "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.5", "1.2.3", ""];

    static (byte[] Mutant, string How) Mutate(Seed seed, Random random)
    {
        var bytes = seed.Bytes.ToList();
        var how = new List<string>();
        int rounds = random.Next(4) == 0 ? random.Next(2, 5) : 1;
        for (int r = 0; r < rounds; r++) how.Add(MutateOnce(bytes, seed, random));
        return (bytes.ToArray(), string.Join("; ", how));
    }

    static string MutateOnce(List<byte> bytes, Seed seed, Random random)
    {
        if (bytes.Count == 0)
        {
            bytes.Add((byte)random.Next(256));
            return "grew from nothing";
        }
        int headerEnd = (int)Math.Min(bytes.Count, seed.PixelOffset);
        int InHeader() => random.Next(Math.Min(128, headerEnd), Math.Max(Math.Min(128, headerEnd) + 1, headerEnd));
        Site? AnySite() => seed.Sites.Length == 0 ? null : seed.Sites[random.Next(seed.Sites.Length)];
        switch (random.Next(12))
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
                if (at >= bytes.Count) goto case 0;
                bytes[at] = random.Next(2) == 0 ? (byte)random.Next(256) : Interesting[random.Next(Interesting.Length)];
                return $"byte {at} = {bytes[at]}";
            }
            case 2:
            {
                if (AnySite() is not { } site || site.LengthAt + site.LengthSize > bytes.Count || site.LengthAt < 0) goto case 0;
                long remaining = bytes.Count - site.Value;
                uint value = random.Next(10) switch
                {
                    0 => 0,
                    1 => 1,
                    2 => 0xFFFFFFFF,
                    3 => 0xFFFFFFFE,
                    4 => 0x7FFFFFFF,
                    5 => (uint)(site.Length + random.Next(-8, 9)),
                    6 => (uint)Math.Max(0, remaining + random.Next(-2, 3)),
                    7 => (uint)(site.Length * 2),
                    _ => (uint)random.NextInt64(0, 1L << 32),
                };
                WriteNumber(bytes, site.LengthAt, site.LengthSize, value, site.BigEndian);
                return $"length of {site.Tag} {site.VR} = {value}";
            }
            case 3:
            {
                int length = random.Next(bytes.Count);
                bytes.RemoveRange(length, bytes.Count - length);
                return $"truncated to {length}";
            }
            case 4:
            {
                if (AnySite() is not { } site) goto case 3;
                int length = (int)Math.Clamp(site.Header + random.Next(0, 13), 0, bytes.Count);
                bytes.RemoveRange(length, bytes.Count - length);
                return $"truncated to {length}, in {site.Tag}";
            }
            case 5:
            {
                if (AnySite() is not { } site || site.Header + 6 > bytes.Count || site.Header < 0) goto case 0;
                string vr = VRs[random.Next(VRs.Length)];
                bytes[(int)site.Header + 4] = (byte)vr[0];
                bytes[(int)site.Header + 5] = (byte)vr[1];
                return $"VR of {site.Tag} = {vr}";
            }
            case 6:
            {
                if (AnySite() is not { } site || site.Header + 4 > bytes.Count || site.Header < 0) goto case 0;
                var tag = random.Next(3) == 0 ? DicomTag.FromValue((uint)random.NextInt64(0, 1L << 32)) : Tags[random.Next(Tags.Length)];
                WriteNumber(bytes, site.Header, 2, tag.Group, site.BigEndian);
                WriteNumber(bytes, site.Header + 2, 2, tag.Element, site.BigEndian);
                return $"tag {site.Tag} = {tag}";
            }
            case 7:
            {
                var tag = ImageTags[random.Next(ImageTags.Length)];
                var site = seed.Sites.FirstOrDefault(s => s.Tag == tag && s.VR == "US" && s.Length == 2);
                if (site is null || site.Value + 2 > bytes.Count) goto case 2;
                ushort[] values = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 31, 32, 33, 64, 0xFFFF, (ushort)random.Next(65536)];
                ushort value = values[random.Next(values.Length)];
                WriteNumber(bytes, site.Value, 2, value, site.BigEndian);
                return $"{tag} = {value}";
            }
            case 8:
            {
                int at = InHeader();
                if (at > bytes.Count) goto case 3;
                int count = random.Next(1, 9);
                if (random.Next(2) == 0)
                {
                    var extra = new byte[count];
                    random.NextBytes(extra);
                    bytes.InsertRange(at, extra);
                    return $"inserted {count} at {at}";
                }
                count = Math.Min(count, bytes.Count - at);
                bytes.RemoveRange(at, count);
                return $"deleted {count} at {at}";
            }
            case 9:
            {
                // Numbers in text (DS, IS): spacing, positions, frames, rescale.
                var site = seed.Sites.Where(s => s.VR is "DS" or "IS" && s.Length > 0).OrderBy(_ => random.Next()).FirstOrDefault();
                if (site is null || site.Value + site.Length > bytes.Count) goto case 1;
                int at = (int)(site.Value + random.Next((int)site.Length));
                bytes[at] = Interesting[random.Next(Interesting.Length)];
                return $"text of {site.Tag} at {at} = '{(char)bytes[at]}'";
            }
            case 10:
            {
                int length = random.Next(1, 64), from = random.Next(bytes.Count), to = InHeader();
                if (to > bytes.Count) goto case 0;
                var chunk = bytes.Skip(from).Take(length).ToList();
                bytes.InsertRange(to, chunk);
                return $"copied {chunk.Count} bytes from {from} to {to}";
            }
            default:
            {
                var site = seed.Sites.FirstOrDefault(s => s.Tag == DicomTag.TransferSyntaxUID);
                if (site is null || site.Value + site.Length > bytes.Count) goto case 0;
                string uid = Syntaxes[random.Next(Syntaxes.Length)];
                if (uid.Length > site.Length) goto case 0;
                for (int k = 0; k < site.Length; k++) bytes[(int)site.Value + k] = k < uid.Length ? (byte)uid[k] : (byte)0;
                return $"transfer syntax = '{uid}'";
            }
        }
    }

    static void WriteNumber(List<byte> bytes, long at, int size, uint value, bool bigEndian)
    {
        Span<byte> field = stackalloc byte[4];
        if (bigEndian) BinaryPrimitives.WriteUInt32BigEndian(field, size == 2 ? value << 16 : value);
        else BinaryPrimitives.WriteUInt32LittleEndian(field, value);
        for (int k = 0; k < size && at + k < bytes.Count; k++) bytes[(int)at + k] = field[k];
    }
}
