using System.Diagnostics;
using System.IO.Compression;
using Medformer.Tracking.Interop;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Tracking;

/// <summary>
/// Random damage to a real torch.save file's pickle (byte flips, opcode-like bytes, insertions, deletions,
/// truncations), with a fixed seed: every mutant either reads as a state_dict or is refused with an
/// <see cref="InvalidDataException"/>; no other exception, no crash, no hang. 2,000 mutants by default, 50,000 with
/// MEDFORMER_FULL_TESTS=1. The whole-file variant also damages the storages and the zip around them.
/// </summary>
public sealed class PickleFuzzTests(TorchStateDicts files, ITestOutputHelper output) : IClassFixture<TorchStateDicts>
{
    static int Mutants => Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 50_000 : 2_000;

    // Opcodes that build, call and look things up, so mutants reach the interesting paths.
    static readonly byte[] Interesting = [.. "()tlde}]usaQRbch.q0K2JMXN"u8, 0x80, 0x81, 0x85, 0x86, 0x87, 0x88, 0x8a, 0x8c, 0x93, 0x94, 0x95, 0xff, 0];

    static (byte[] Mutant, string How) Mutate(byte[] valid, Random random)
    {
        var bytes = new List<byte>(valid);
        int edits = 1 + random.Next(4);
        var how = new List<string>();
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = random.Next(bytes.Count);
            switch (random.Next(5))
            {
                case 0: bytes[at] ^= (byte)(1 << random.Next(8)); how.Add($"flip@{at}"); break;
                case 1: bytes[at] = Interesting[random.Next(Interesting.Length)]; how.Add($"set@{at}"); break;
                case 2: bytes.Insert(at, Interesting[random.Next(Interesting.Length)]); how.Add($"insert@{at}"); break;
                case 3: bytes.RemoveRange(at, Math.Min(1 + random.Next(8), bytes.Count - at)); how.Add($"delete@{at}"); break;
                default: bytes.RemoveRange(at, bytes.Count - at); how.Add($"truncate@{at}"); break;
            }
        }
        return ([.. bytes], string.Join(",", how));
    }

    byte[] ValidPickle()
    {
        using var zip = ZipFile.OpenRead(files["mixed.pt"]);
        using var stream = zip.GetEntry("mixed/data.pkl")!.Open();
        using var memory = new MemoryStream();
        stream.CopyTo(memory);
        return memory.ToArray();
    }

    [Fact]
    public void MutatedPicklesReadOrAreRefused()
    {
        byte[] valid = ValidPickle();
        string path = Path.Combine(files.Folder, "fuzz-pickle.pt");
        File.Copy(files["mixed.pt"], path, overwrite: true);
        var random = new Random(15);
        int read = 0, refused = 0;
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < Mutants; i++)
        {
            var (mutant, how) = Mutate(valid, random);
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            {
                zip.GetEntry("mixed/data.pkl")!.Delete();
                using var stream = zip.CreateEntry("mixed/data.pkl", CompressionLevel.NoCompression).Open();
                stream.Write(mutant);
            }
            try
            {
                using var state = StateDictImport.Read(path);
                read++;
            }
            catch (InvalidDataException e)
            {
                Assert.StartsWith(path, e.Message);
                refused++;
            }
            catch (Exception e)
            {
                Assert.Fail($"mutant {i} ({how}) threw {e.GetType().Name}, not InvalidDataException: {e.Message}");
            }
        }
        output.WriteLine($"{Mutants} pickle mutants in {clock.Elapsed.TotalSeconds:F1} s: {read} read, {refused} refused");
        Assert.True(refused > Mutants / 2, $"only {refused} of {Mutants} refused: the mutations miss");
    }

    [Fact]
    public void MutatedFilesReadOrAreRefused()
    {
        foreach (string name in new[] { "mixed.pt", "legacy.pt" })
        {
            byte[] valid = File.ReadAllBytes(files[name]);
            string path = Path.Combine(files.Folder, "fuzz-" + name);
            var random = new Random(16);
            int read = 0;
            for (int i = 0; i < Mutants / 4; i++)
            {
                var (mutant, how) = Mutate(valid, random);
                File.WriteAllBytes(path, mutant);
                try
                {
                    using var state = StateDictImport.Read(path);
                    read++;
                }
                catch (InvalidDataException e)
                {
                    Assert.StartsWith(path, e.Message);
                }
                catch (Exception e)
                {
                    Assert.Fail($"{name} mutant {i} ({how}) threw {e.GetType().Name}, not InvalidDataException: {e.Message}");
                }
            }
            output.WriteLine($"{name}: {Mutants / 4} whole-file mutants, {read} read");
        }
    }
}
