using System.Buffers.Binary;
using System.IO.Compression;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Xunit;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

public sealed class MnistCorpusTests : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("mnist-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    /// <summary>An IDX file as LeCun's format defines it: 00 00 type rank, big-endian u32 dims, big-endian values.</summary>
    static byte[] IdxBytes(byte type, long[] shape, double[] values)
    {
        int size = type switch { 0x08 or 0x09 => 1, 0x0B => 2, 0x0C or 0x0D => 4, _ => 8 };
        var bytes = new byte[4 + 4 * shape.Length + size * values.Length];
        bytes[2] = type;
        bytes[3] = (byte)shape.Length;
        for (int i = 0; i < shape.Length; i++) BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(4 + 4 * i), (uint)shape[i]);
        var data = bytes.AsSpan(4 + 4 * shape.Length);
        for (int i = 0; i < values.Length; i++)
        {
            var at = data[(i * size)..];
            switch (type)
            {
                case 0x08: at[0] = (byte)values[i]; break;
                case 0x09: at[0] = (byte)(sbyte)values[i]; break;
                case 0x0B: BinaryPrimitives.WriteInt16BigEndian(at, (short)values[i]); break;
                case 0x0C: BinaryPrimitives.WriteInt32BigEndian(at, (int)values[i]); break;
                case 0x0D: BinaryPrimitives.WriteSingleBigEndian(at, (float)values[i]); break;
                default: BinaryPrimitives.WriteDoubleBigEndian(at, values[i]); break;
            }
        }
        return bytes;
    }

    void Write(string name, byte[] bytes, bool gzip)
    {
        if (!gzip)
        {
            File.WriteAllBytes(Path.Combine(folder, name), bytes);
            return;
        }
        using var file = File.Create(Path.Combine(folder, name + ".gz"));
        using var zip = new GZipStream(file, CompressionLevel.Fastest);
        zip.Write(bytes);
    }

    void WriteSplit(string prefix, int count, bool gzip)
    {
        var pixels = Enumerable.Range(0, count * 28 * 28).Select(i => (double)(i % 256)).ToArray();
        Write($"{prefix}-images-idx3-ubyte", IdxBytes(0x08, [count, 28, 28], pixels), gzip);
        Write($"{prefix}-labels-idx1-ubyte", IdxBytes(0x08, [count], [.. Enumerable.Range(0, count).Select(i => (double)(i % 10))]), gzip);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ReadsBothSplitsPlainOrGzipped(bool gzip)
    {
        WriteSplit("train", 12, gzip);
        WriteSplit("t10k", 3, gzip);
        using var train = MnistCorpus.Open(folder, "train");
        using var test = MnistCorpus.Open(folder, "test");
        Assert.Equal(12, train.Count);
        Assert.Equal(3, test.Count);
        using var sample = train.Get(7);
        Assert.Equal([1L, 28, 28], sample.Image.shape);
        Assert.Equal([7L], sample.Meta.Labels);
        Assert.Equal(Dimensionality.Image, sample.Meta.Dimensionality);
        // Pixel k of sample 7 held (7·784 + k) mod 256; the corpus scales by 1/255 as torchvision's ToTensor does.
        float[] values = sample.Image.data<float>().ToArray();
        Assert.Equal((7 * 784 + 5) % 256 / 255f, values[5], 6);
        Assert.Equal((7 * 784 + 783) % 256 / 255f, values[783], 6);
    }

    [Theory]
    [InlineData((byte)0x08, 200.0)]
    [InlineData((byte)0x09, -100.0)]
    [InlineData((byte)0x0B, -30000.0)]
    [InlineData((byte)0x0C, 123456.0)]
    [InlineData((byte)0x0D, -1.5)]
    [InlineData((byte)0x0E, 2.25)]
    public void EveryValueTypeIsBigEndian(byte type, double value)
    {
        string path = Path.Combine(folder, "x.idx");
        File.WriteAllBytes(path, IdxBytes(type, [2, 3], [0, 1, 2, 3, 4, value]));
        var idx = Idx.Read(path);
        Assert.Equal([2L, 3], idx.Shape);
        Assert.Equal([0f, 1, 2, 3, 4, (float)value], idx.Values);
    }

    [Fact]
    public void MalformedFilesNameTheFileAndTheFault()
    {
        string path = Path.Combine(folder, "bad");
        var good = IdxBytes(0x08, [4, 28, 28], new double[4 * 784]);

        File.WriteAllBytes(path, [.. good.Take(good.Length - 1)]);
        var e = Assert.Throws<InvalidDataException>(() => Idx.Read(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("needs 3136 bytes", e.Message);

        File.WriteAllBytes(path, [0x50, 0x4B, 0x03, 0x04, 0, 0, 0, 0]);
        Assert.Contains("not an IDX file", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message);

        File.WriteAllBytes(path, [0, 0, 0x07, 1, 0, 0, 0, 1, 0]);
        Assert.Contains("unknown IDX value type 0x07", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message);

        // A header claiming 4 billion values is refused before anything is allocated.
        File.WriteAllBytes(path, [0, 0, 0x08, 2, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 1, 2]);
        Assert.Contains("more values than an array can", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message);

        File.WriteAllBytes(path, [0, 0]);
        Assert.Contains("ends in the magic number", Assert.Throws<InvalidDataException>(() => Idx.Read(path)).Message);

        // Gzip cut short: the same error kind, naming the file.
        Write("cut", good, gzip: true);
        string cut = Path.Combine(folder, "cut.gz");
        var zipped = File.ReadAllBytes(cut);
        File.WriteAllBytes(cut, zipped[..(zipped.Length / 2)]);
        Assert.Contains(cut, Assert.Throws<InvalidDataException>(() => Idx.Read(cut)).Message);
    }

    [Fact]
    public void MismatchedOrMissingFilesAreClearErrors()
    {
        Assert.Contains("no train-images-idx3-ubyte", Assert.Throws<ArgumentException>(() => MnistCorpus.Open(folder)).Message);
        Assert.Contains("train and test only", Assert.Throws<ArgumentException>(() => MnistCorpus.Open(folder, "val")).Message);
        Assert.Contains("not a folder", Assert.Throws<ArgumentException>(() => MnistCorpus.Open(Path.Combine(folder, "none"))).Message);
        Write("train-images-idx3-ubyte", IdxBytes(0x08, [3, 28, 28], new double[3 * 784]), gzip: false);
        Write("train-labels-idx1-ubyte", IdxBytes(0x08, [2], [1, 2]), gzip: false);
        Assert.Contains("do not match the 3 images", Assert.Throws<InvalidDataException>(() => MnistCorpus.Open(folder)).Message);
    }

    [FashionMnistFact]
    public void FashionMnistFromDebianWhenInstalled()
    {
        // Debian's dataset-fashion-mnist package (./test.sh installs it): the real files' counts and class balance.
        using var test = MnistCorpus.Open(MnistCorpus.FashionMnistFolder, "test");
        Assert.Equal(10_000, test.Count);
        var counts = new int[10];
        for (int i = 0; i < test.Count; i++)
            using (var s = test.Get(i)) counts[s.Meta.Labels[0]]++;
        Assert.All(counts, c => Assert.Equal(1000, c));
    }
}
