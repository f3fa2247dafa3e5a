using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Medformer.Datasets.Formats;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Datasets;

/// <summary>
/// `medformer inspect` on small files that inflate to hundreds of MiB: one line naming the file and exit 1, or the
/// right answer, with the child's peak resident memory (GNU time's %M) at most 512 MiB above what inspecting a
/// tiny file takes, or twice the file's valid content where that is larger.
/// </summary>
public sealed class HostileFileCliTests(ITestOutputHelper output) : IDisposable
{
    const long MiB = 1 << 20;
    const long Budget = 512 * MiB;

    readonly string root = Directory.CreateTempSubdirectory("medformer-hostile-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly Lazy<long> Baseline = new(() => Measure(["inspect", Path.Combine(Repo.Root, "tests", "datasets", "data", "nibabel",
        "anatomical.nii")]).Peak);

    /// <summary>The command's result (GNU time's line taken off stderr) and its peak resident bytes.</summary>
    static (Repo.Result Result, long Peak) Measure(string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        var run = Repo.Run("/usr/bin/time", ["-f", "medformer-peak-kib %M", Repo.Cli, .. args], timeoutSeconds: 300, environment: environment);
        // GNU time adds "Command exited with non-zero status N" (kept out: the exit code says it) and its own line.
        var lines = run.Stderr.TrimEnd().Split('\n').Where(l => !l.StartsWith("Command exited with non-zero status", StringComparison.Ordinal)).ToArray();
        var last = lines[^1];
        Assert.StartsWith("medformer-peak-kib ", last);
        long peak = long.Parse(last["medformer-peak-kib ".Length..]) * 1024;
        return (run with { Stderr = string.Join('\n', lines[..^1]) }, peak);
    }

    (Repo.Result Result, long Above) Inspect(string path)
    {
        var (result, peak) = Measure(["inspect", path, "--json"]);
        long above = peak - Baseline.Value;
        output.WriteLine($"{Path.GetFileName(path)}: exit {result.ExitCode}, peak {peak / MiB} MiB, {above / MiB} MiB above " +
            $"the baseline {Baseline.Value / MiB} MiB");
        return (result, above);
    }

    static void OneLineNaming(Repo.Result result, string path, string fault)
    {
        Assert.Equal(1, result.ExitCode);
        var line = Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.Contains(path, line);
        Assert.Contains(fault, line);
    }

    [Fact]
    public void ADeflatedDicomThatInflatesPastTheCapIsRefusedInLittleMemory()
    {
        string path = Path.Combine(root, "bomb.dcm");
        File.WriteAllBytes(path, DicomWriter.File(DeflatedZeros(600 * MiB), DicomTransferSyntax.DeflatedExplicitVRLittleEndianUid, compress: false));
        Assert.InRange(new FileInfo(path).Length, 1, 3 * MiB);
        var (result, above) = Inspect(path);
        OneLineNaming(result, path, "inflates beyond 512 MiB");
        Assert.InRange(above, long.MinValue, Budget);
    }

    [Fact]
    public void AGzipNiftiOf128MiBOfVoxelsIsInspectedInBoundedMemory()
    {
        // 512 × 512 × 512 uint8, all zero but the last voxel: 130 KB gzipped (statistics in float64 of the whole
        // volume would take 1 GiB).
        string path = Path.Combine(root, "large.nii.gz");
        var header = new byte[352];
        BinaryPrimitives.WriteInt32LittleEndian(header, 348);
        short[] dim = [3, 512, 512, 512, 1, 1, 1, 1];
        for (int i = 0; i < 8; i++) BinaryPrimitives.WriteInt16LittleEndian(header.AsSpan(40 + 2 * i), dim[i]);
        BinaryPrimitives.WriteInt16LittleEndian(header.AsSpan(70), 2);  // uint8
        BinaryPrimitives.WriteInt16LittleEndian(header.AsSpan(72), 8);
        for (int i = 0; i < 4; i++) BinaryPrimitives.WriteSingleLittleEndian(header.AsSpan(76 + 4 * i), 1);
        BinaryPrimitives.WriteSingleLittleEndian(header.AsSpan(108), 352);
        header[123] = 2;  // mm
        "n+1\0"u8.CopyTo(header.AsSpan(344));
        long voxels = 512L * 512 * 512;
        using (var file = File.Create(path))
        using (var gzip = new GZipStream(file, CompressionLevel.Optimal))
        {
            gzip.Write(header);
            var zeros = new byte[MiB];
            for (long left = voxels; left > 0; left -= zeros.Length)
            {
                if (left == zeros.Length) zeros[^1] = 255;
                gzip.Write(zeros);
            }
        }
        Assert.InRange(new FileInfo(path).Length, 1, 3 * MiB);
        var (result, above) = Inspect(path);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var stats = System.Text.Json.JsonDocument.Parse(result.Stdout).RootElement.GetProperty("statistics");
        Assert.Equal(255, stats.GetProperty("max").GetDouble());
        Assert.Equal(1, stats.GetProperty("nonzero").GetDouble());
        Assert.Equal(255.0 / voxels, stats.GetProperty("mean").GetDouble(), 12);
        Assert.InRange(above, long.MinValue, Math.Max(Budget, 2 * voxels));
    }

    [Fact]
    public void AnNpzMemberClaimingMoreThanDeflateCanHoldIsRefusedBeforeAllocating()
    {
        // The array and the zip entry both claim 1 GiB; 2 KiB of deflate data cannot hold it.
        string path = Path.Combine(root, "claims.npz");
        WriteNpz(path, NpyHeader("(1073741824,)"), 1000, claimedData: 1L << 30);
        var e = Assert.Throws<InvalidDataException>(() => ReadImages(path));
        Assert.Contains("claims.npz:images.npy", e.Message);
        Assert.Contains("cannot inflate", e.Message);
        var (result, above) = Inspect(path);
        OneLineNaming(result, path, "cannot inflate");
        Assert.InRange(above, long.MinValue, Budget);
    }

    [Fact]
    public void AnNpzMemberThatInflatesPastItsArrayIsRefused()
    {
        // A 16-byte array in a member that inflates to 600 MiB: stated honestly, then hidden behind a lying entry.
        string honest = Path.Combine(root, "honest.npz"), lying = Path.Combine(root, "lying.npz");
        WriteNpz(honest, NpyHeader("(16,)"), 16 + 600 * MiB, claimedData: null);
        WriteNpz(lying, NpyHeader("(16,)"), 16 + 600 * MiB, claimedData: 16);
        foreach (var (path, fault) in new[] { (honest, "its array needs"), (lying, "inflates past the 144 bytes") })
        {
            var e = Assert.Throws<InvalidDataException>(() => ReadImages(path));
            Assert.Contains(Path.GetFileName(path) + ":images.npy", e.Message);
            var (result, above) = Inspect(path);
            Assert.Equal(1, result.ExitCode);
            Assert.Contains(path, Assert.Single(result.Stderr.Trim().Split('\n')));
            Assert.Contains(fault, result.Stderr);
            Assert.InRange(above, long.MinValue, Budget);
        }
    }

    [Fact]
    public void PredictRefusesTheHostileNpzFilesInBoundedMemory()
    {
        // A fine-tuned model to predict with: tiny, 2 classification steps on the phantom.
        string pretrained = Path.Combine(root, "pretrained"), tuned = Path.Combine(root, "tuned");
        using (var untrained = new MedformerModel(MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 }))
            Checkpoint.Save(untrained, pretrained);
        var home = new Dictionary<string, string> { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "none" };
        var finetune = Repo.Run(Repo.Cli, ["finetune", "--checkpoint", pretrained, "--task", "phantom", "--max-steps", "2", "--batch-size", "4",
            "--precision", "fp32", "--no-augment", "--out", tuned], timeoutSeconds: 600, environment: home);
        Assert.True(finetune.ExitCode == 0, finetune.Stderr);
        string model = Path.Combine(tuned, "model");

        // The baseline: predict on one valid 28×28 image.
        string valid = Path.Combine(root, "valid.npz");
        var image = new byte[28 * 28];
        using (var file = File.Create(valid))
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
        using (var stream = zip.CreateEntry("images.npy", CompressionLevel.Optimal).Open())
        {
            stream.Write(NpyHeader("(1, 28, 28)"));
            stream.Write(image);
        }
        var (ok, baseline) = Measure(["predict", "--checkpoint", model, valid, "--out", Path.Combine(root, "ok")], home);
        Assert.True(ok.ExitCode == 0, ok.Stderr);

        string claims = Path.Combine(root, "claims.npz"), honest = Path.Combine(root, "honest.npz"), lying = Path.Combine(root, "lying.npz");
        WriteNpz(claims, NpyHeader("(1073741824,)"), 1000, claimedData: 1L << 30);
        WriteNpz(honest, NpyHeader("(16,)"), 16 + 600 * MiB, claimedData: null);
        WriteNpz(lying, NpyHeader("(16,)"), 16 + 600 * MiB, claimedData: 16);
        foreach (string path in new[] { claims, honest, lying })
        {
            var (result, peak) = Measure(["predict", "--checkpoint", model, path, "--out", Path.Combine(root, "p-" + Path.GetFileNameWithoutExtension(path))],
                home);
            output.WriteLine($"predict {Path.GetFileName(path)}: exit {result.ExitCode}, peak {peak / MiB} MiB, baseline " +
                $"{baseline / MiB} MiB: {result.Stderr}");
            Assert.Equal(1, result.ExitCode);
            Assert.Contains(path, Assert.Single(result.Stderr.Trim().Split('\n')));
            Assert.InRange(peak - baseline, long.MinValue, Budget);
        }
    }

    static void ReadImages(string path)
    {
        using var npz = Npz.Open(path);
        npz.Read("images").Dispose();
    }

    static byte[] DeflatedZeros(long length)
    {
        using var output = new MemoryStream();
        using (var deflate = new DeflateStream(output, CompressionLevel.Optimal, leaveOpen: true))
        {
            var zeros = new byte[MiB];
            for (long left = length; left > 0; left -= zeros.Length) deflate.Write(zeros, 0, (int)Math.Min(left, zeros.Length));
        }
        return output.ToArray();
    }

    static byte[] NpyHeader(string shape)
    {
        string dict = $"{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}";
        int padded = (10 + dict.Length + 1 + 63) / 64 * 64;
        string text = dict + new string(' ', padded - 10 - dict.Length - 1) + "\n";
        var bytes = new byte[10 + text.Length];
        bytes[0] = 0x93;
        "NUMPY"u8.CopyTo(bytes.AsSpan(1));
        bytes[6] = 1;
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(8), (ushort)text.Length);
        Encoding.Latin1.GetBytes(text).CopyTo(bytes, 10);
        return bytes;
    }

    /// <summary>An .npz with one deflated member "images.npy": the header, then <paramref name="data"/> zero bytes;
    /// with <paramref name="claimedData"/>, the zip's local and central records state header + that many instead.</summary>
    static void WriteNpz(string path, byte[] header, long data, long? claimedData)
    {
        using (var file = File.Create(path))
        using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
        {
            using var stream = zip.CreateEntry("images.npy", CompressionLevel.Optimal).Open();
            stream.Write(header);
            var zeros = new byte[MiB];
            for (long left = data; left > 0; left -= zeros.Length) stream.Write(zeros, 0, (int)Math.Min(left, zeros.Length));
        }
        if (claimedData is not { } claimed) return;
        var bytes = File.ReadAllBytes(path);
        uint size = checked((uint)(header.Length + claimed));
        Assert.Equal(0x04034b50u, BinaryPrimitives.ReadUInt32LittleEndian(bytes));
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(22), size);
        int central = bytes.AsSpan().LastIndexOf("PK\x01\x02"u8);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(central + 24), size);
        File.WriteAllBytes(path, bytes);
    }
}
