using System.Collections.Concurrent;
using System.Diagnostics;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

/// <summary>
/// <see cref="MedMnistCorpus"/> on hand-made files in MedMNIST's layout (2D grey, 2D RGB, 3D, multi-label; stored and
/// deflated; numpy's own files), the values and metas it gives, its errors, and many threads at once.
/// </summary>
public sealed class MedMnistCorpusTests(ITestOutputHelper output) : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-medmnist-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    static MedMnistSubset Subset(string name) => MedMnistRegistry.Embedded.Get(name);

    /// <summary>uint8 values (i * 31 + offset) mod 256 in the given shape.</summary>
    static Tensor Pattern(long[] shape, int offset)
    {
        long count = shape.Aggregate(1L, (a, n) => a * n);
        return (arange(count, ScalarType.Int64) * 31 + offset).remainder(256).to(ScalarType.Byte).reshape(shape);
    }

    /// <summary>A MedMNIST-layout file: each split's images from <see cref="Pattern"/> and its labels.</summary>
    string Write(string name, long[] imageShape, Func<long, long[]> labelRow, bool compressed, params (string Split, int Count)[] splits)
    {
        string path = Path.Combine(folder, name);
        using var scope = NewDisposeScope();
        var arrays = new Dictionary<string, Tensor>();
        int offset = 0;
        foreach (var (split, count) in splits)
        {
            arrays[$"{split}_images"] = Pattern([count, .. imageShape], offset);
            var rows = Enumerable.Range(0, count).Select(i => labelRow(i)).ToArray();
            arrays[$"{split}_labels"] = tensor(rows.SelectMany(r => r).Select(v => (byte)v).ToArray(), [count, rows[0].Length]);
            offset += 50;
        }
        Npz.Write(path, arrays, compressed);
        return path;
    }

    static byte[] Bytes(Tensor t) => t.data<byte>().ToArray();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void GreyImagesComeAsOneChannelInUnitRangeWithTheirMeta(bool compressed)
    {
        string path = Write("pneumoniamnist.npz", [28, 28], i => [i % 2], compressed, ("train", 6), ("val", 3), ("test", 4));
        using var corpus = MedMnistCorpus.Open(path, "val");
        Assert.Equal(compressed ? "memory" : "mapped", corpus.Backing);
        Assert.Equal(("pneumoniamnist", 3L), (corpus.Name, corpus.Count));
        Assert.Equal([1L, 28, 28], corpus.ImageShape);
        using var expected = Pattern([3, 28, 28], 50);
        for (long i = 0; i < 3; i++)
        {
            using var sample = corpus.Get(i);
            Assert.Equal(ScalarType.Float32, sample.Image.dtype);
            Assert.Equal([1L, 28, 28], sample.Image.shape);
            using var want = expected[i].unsqueeze(0).to(ScalarType.Float32) / 255f;
            Assert.True(TensorEquality.Same(sample.Image, want), $"sample {i} differs");
            Assert.Null(sample.Target);
            var meta = sample.Meta;
            Assert.Equal(("pneumoniamnist", $"{path}:val_images[{i}]", i), (meta.Corpus, meta.Source, meta.Index));
            Assert.Equal(("chest", "xray", "2d"), (meta.Organ, meta.Modality, meta.Dimensionality.Name));
            Assert.Equal([1.0, 1.0], meta.Spacing);
            Assert.Equal([i % 2], meta.Labels);
        }
        using var max = MedMnistCorpus.Open(path, "test");
        Assert.Equal(4, max.Count);
    }

    [Fact]
    public void RgbImagesComeChannelsFirst()
    {
        string path = Write("pathmnist_64.npz", [64, 64, 3], i => [(i * 4) % 9], compressed: true, ("train", 5), ("val", 1), ("test", 1));
        using var corpus = MedMnistCorpus.Open(path, "train");
        Assert.Equal([3L, 64, 64], corpus.ImageShape);
        using var raw = Pattern([5, 64, 64, 3], 0);
        using var sample = corpus.Get(4);
        using var want = raw[4].permute(2, 0, 1).to(ScalarType.Float32) / 255f;
        Assert.True(TensorEquality.Same(sample.Image, want));
        // Spot-check against the layout by hand: pixel (row 10, column 20), green channel.
        long flat = ((4L * 64 + 10) * 64 + 20) * 3 + 1;
        Assert.Equal((flat * 31 % 256) / 255f, sample.Image[1, 10, 20].item<float>());
        Assert.Equal(("colon", "pathology"), (sample.Meta.Organ, sample.Meta.Modality));
        Assert.Equal([7L], sample.Meta.Labels);
    }

    [Fact]
    public void VolumesComeWithAChannelAxis()
    {
        string path = Write("organmnist3d.npz", [28, 28, 28], i => [i], compressed: false, ("train", 4), ("val", 2), ("test", 2));
        using var corpus = MedMnistCorpus.Open(path, "test");
        Assert.Equal([1L, 28, 28, 28], corpus.ImageShape);
        using var raw = Pattern([2, 28, 28, 28], 100);
        using var sample = corpus.Get(1);
        using var want = raw[1].unsqueeze(0).to(ScalarType.Float32) / 255f;
        Assert.True(TensorEquality.Same(sample.Image, want));
        Assert.Equal(("abdomen", "ct", "3d"), (sample.Meta.Organ, sample.Meta.Modality, sample.Meta.Dimensionality.Name));
        Assert.Equal([1.0, 1.0, 1.0], sample.Meta.Spacing);
        Assert.Equal([1L], sample.Meta.Labels);
        Assert.Equal([28L, 28, 28], sample.SpatialShape);
    }

    [Fact]
    public void MultiLabelRowsComeWhole()
    {
        string path = Write("chestmnist.npz", [28, 28], i => [.. Enumerable.Range(0, 14).Select(k => (long)((i >> (k % 4)) & 1))], compressed: true, ("train",
            9), ("val", 1), ("test", 1));
        using var corpus = MedMnistCorpus.Open(path);
        using var sample = corpus.Get(6);
        Assert.Equal(14, sample.Meta.Labels.Length);
        Assert.Equal([0L, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1, 0, 0, 1], sample.Meta.Labels);
    }

    [Fact]
    public void LargeDeflatedArraysAreUnpackedOnceAndMapped()
    {
        string path = Write("dermamnist_128.npz", [128, 128, 3], i => [i % 7], compressed: true, ("train", 3), ("val", 1), ("test", 1));
        string unpack = Path.Combine(folder, "unpacked");
        var options = new MedMnistOpenOptions(InMemoryLimit: 1000, UnpackDirectory: unpack);
        using var inMemory = MedMnistCorpus.Open(path, "train");
        using var unpacked = MedMnistCorpus.Open(path, "train", options: options);
        Assert.Equal(("memory", "unpacked"), (inMemory.Backing, unpacked.Backing));
        for (long i = 0; i < 3; i++)
        {
            using var a = inMemory.Get(i);
            using var b = unpacked.Get(i);
            Assert.True(TensorEquality.Same(a.Image, b.Image));
        }
        var written = Directory.GetFiles(unpack, "*.npy", SearchOption.AllDirectories);
        Assert.Equal("train_images.npy", Path.GetFileName(Assert.Single(written)));
        var stamp = File.GetLastWriteTimeUtc(written[0]);
        using (MedMnistCorpus.Open(path, "train", options: options)) { }
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(written[0]));
        // numpy reads the unpacked member as a plain .npy of the same array.
        using var whole = Npy.Read(written[0]);
        Assert.Equal([3L, 128, 128, 3], whole.shape);
    }

    [Theory]
    [InlineData("numpy_savez.npz", "mapped")]
    [InlineData("numpy_savez_compressed.npz", "memory")]
    public void NumpysOwnFilesRead(string file, string backing)
    {
        string path = Path.Combine(Repo.Root, "tests", "datasets", "data", "medmnist", file);
        var subset = Subset("pathmnist");
        foreach (var (split, count, offset) in new[] { ("train", 4, 0), ("val", 2, 100), ("test", 3, 200) })
        {
            using var corpus = MedMnistCorpus.Open(path, split, subset);
            Assert.Equal((count, backing), (corpus.Count, corpus.Backing));
            for (int i = 0; i < count; i++)
            {
                using var sample = corpus.Get(i);
                Assert.Equal([3L, 5, 5], sample.Image.shape);
                // README: images = ((arange(n*75) * 7 + offset) % 256).reshape(n, 5, 5, 3); labels = (arange(n) + offset) % 9.
                for (int c = 0; c < 3; c++)
                    for (int y = 0; y < 5; y++)
                        for (int x = 0; x < 5; x++)
                        {
                            long flat = ((i * 5L + y) * 5 + x) * 3 + c;
                            Assert.Equal((flat * 7 + offset) % 256 / 255f, sample.Image[c, y, x].item<float>());
                        }
                Assert.Equal([(i + offset) % 9L], sample.Meta.Labels);
            }
        }
    }

    [Fact]
    public void ManyThreadsReadTheSameSamples()
    {
        string path = Write("bloodmnist.npz", [28, 28, 3], i => [i % 8], compressed: false, ("train", 500), ("val", 1), ("test", 1));
        using var corpus = MedMnistCorpus.Open(path);
        var sequential = new double[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            using var sample = corpus.Get(i);
            sequential[i] = sample.Image.sum().item<float>() + 1000 * sample.Meta.Labels[0];
        }
        var parallel = new ConcurrentDictionary<long, double>();
        var clock = Stopwatch.StartNew();
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            var random = new Random(worker);
            for (int k = 0; k < 2000; k++)
            {
                long i = random.NextInt64(corpus.Count);
                using var sample = corpus.Get(i);
                double value = sample.Image.sum().item<float>() + 1000 * sample.Meta.Labels[0];
                parallel.AddOrUpdate(i, value, (_, old) => old == value ? value : double.NaN);
            }
        });
        output.WriteLine($"16,000 random reads of 3x28x28 from 8 threads: {clock.Elapsed.TotalMilliseconds:F0} ms");
        Assert.True(parallel.Count > 400);
        foreach (var (i, value) in parallel) Assert.Equal(sequential[i], value);
    }

    [Fact]
    public void BadInputIsRefusedNamingTheFile()
    {
        string path = Write("octmnist.npz", [28, 28], i => [i % 4], compressed: false, ("train", 3), ("val", 1), ("test", 1));
        Assert.Contains("split 'training'", Assert.Throws<ArgumentException>(() => MedMnistCorpus.Open(path, "training")).Message);
        Assert.Contains("no such file", Assert.Throws<FileNotFoundException>(() => MedMnistCorpus.Open(path + ".x")).Message);
        using (var corpus = MedMnistCorpus.Open(path))
        {
            Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Get(3));
            Assert.Throws<ArgumentOutOfRangeException>(() => corpus.Get(-1));
        }
        var disposed = MedMnistCorpus.Open(path);
        disposed.Dispose();
        Assert.Throws<ObjectDisposedException>(() => disposed.Get(0));

        string unnamed = Path.Combine(folder, "mine.npz");
        File.Copy(path, unnamed);
        Assert.Contains("names no MedMNIST subset", Assert.Throws<ArgumentException>(() => MedMnistCorpus.Open(unnamed)).Message);
        using (var explicitSubset = MedMnistCorpus.Open(unnamed, subset: Subset("octmnist"))) Assert.Equal(3, explicitSubset.Count);

        // The wrong subset for the data: channels, label columns, label values.
        Assert.Contains("1 channel(s) but pathmnist has 3", Assert.Throws<InvalidDataException>(() => MedMnistCorpus.Open(path,
            subset: Subset("pathmnist"))).Message);
        Assert.Contains("but chestmnist (multi-label) has 14", Assert.Throws<InvalidDataException>(() => MedMnistCorpus.Open(path,
            subset: Subset("chestmnist"))).Message);
        string labels = Write("breastmnist.npz", [28, 28], i => [i], compressed: false, ("train", 3), ("val", 1), ("test", 1));
        var e = Assert.Throws<InvalidDataException>(() => MedMnistCorpus.Open(labels));
        Assert.Contains($"{labels}:train_labels.npy: sample 2 has label 2, outside [0, 2)", e.Message);

        // A 2D subset's file holding volumes, float images, no images for the split.
        string volumes = Write("organamnist.npz", [4, 28, 28], i => [0], compressed: false, ("train", 2), ("val", 1), ("test", 1));
        Assert.Contains("is not a 2d MedMNIST image array", Assert.Throws<InvalidDataException>(() => MedMnistCorpus.Open(volumes)).Message);
        string floats = Path.Combine(folder, "tissuemnist.npz");
        using (var images = zeros(2, 28, 28))
        using (var rows = zeros(new long[] { 2, 1 }, ScalarType.Byte))
            Npz.Write(floats, new Dictionary<string, Tensor> { ["train_images"] = images, ["train_labels"] = rows });
        Assert.Contains("<f4", Assert.Throws<NotSupportedException>(() => MedMnistCorpus.Open(floats)).Message);
        Assert.Contains("no array 'val_images'", Assert.Throws<InvalidDataException>(() => MedMnistCorpus.Open(floats, "val")).Message);
    }

    [Fact]
    public void DamagedFilesAreRefusedOrReadWithinBounds()
    {
        // Stored (mapped), deflated (inflated in memory), deflated and unpacked to a file.
        byte[][] valid =
        [
            File.ReadAllBytes(Write("retinamnist.npz", [28, 28, 3], i => [i % 5], compressed: false, ("train", 4), ("val", 2), ("test", 2))),
            File.ReadAllBytes(Write("retinamnist_64.npz", [28, 28, 3], i => [i % 5], compressed: true, ("train", 4), ("val", 2), ("test", 2))),
        ];
        string unpack = Path.Combine(folder, "unpacked");
        int mutants = Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 20_000 : 400;
        var random = new Random(20_240_612);
        string mutantPath = Path.Combine(folder, "retinamnist_28.npz");
        int opened = 0, refused = 0;
        for (int m = 0; m < mutants; m++)
        {
            int kind = random.Next(3);
            byte[] mutant = (byte[])valid[Math.Min(kind, 1)].Clone();
            var options = new MedMnistOpenOptions(InMemoryLimit: kind == 2 ? 0 : 1L << 30, UnpackDirectory: unpack);
            switch (random.Next(3))
            {
                case 0:
                    for (int k = random.Next(1, 8); k > 0; k--) mutant[random.Next(mutant.Length)] = (byte)random.Next(256);
                    break;
                case 1:
                    mutant = mutant[..random.Next(mutant.Length)];
                    break;
                default:
                    // Aim at the headers: zip records and the npy header dictionaries.
                    int at = random.Next(2) == 0 ? random.Next(Math.Min(200, mutant.Length)) : mutant.Length - 1 - random.Next(Math.Min(400, mutant.Length));
                    mutant[at] = (byte)random.Next(256);
                    break;
            }
            File.WriteAllBytes(mutantPath, mutant);
            try
            {
                using var corpus = MedMnistCorpus.Open(mutantPath, "train", Subset("retinamnist"), options);
                for (long i = 0; i < corpus.Count; i++)
                {
                    using var sample = corpus.Get(i);
                    Assert.Equal(corpus.ImageShape, sample.Image.shape);
                    Assert.InRange(sample.Image.max().item<float>(), 0f, 1f);
                }
                opened++;
            }
            catch (Exception ex) when (ex is InvalidDataException or NotSupportedException)
            {
                refused++;
            }
            catch (Exception ex)
            {
                Assert.Fail($"mutant {m} (kind {kind}) threw {ex.GetType().Name}: {ex.Message}");
            }
            finally
            {
                if (Directory.Exists(unpack)) Directory.Delete(unpack, recursive: true);
            }
        }
        output.WriteLine($"{mutants} mutants: {opened} opened, {refused} refused");
        Assert.True(opened > 0 && refused > 0);
    }
}
