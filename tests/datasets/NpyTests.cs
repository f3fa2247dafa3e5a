using Medformer.Datasets.Formats;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// .npy and .npz against files numpy 1.24 wrote (tests/datasets/data/npy, made by numpy.save / savez /
/// savez_compressed): every dtype we read, both byte orders, C and Fortran order.
/// </summary>
public sealed class NpyTests : IDisposable
{
    static readonly string Data = Path.Combine(Repo.Root, "tests", "datasets", "data", "npy");
    readonly string temp = Directory.CreateTempSubdirectory("medformer-npy-").FullName;

    public void Dispose() => Directory.Delete(temp, recursive: true);

    // What the generator stored at flat C-order position k of the [2,3,4] array.
    static double Expected(string kind, long k) => kind switch
    {
        "b1" => k % 2,
        "u1" => k * 2500 % 256,
        "u2" or "u4" or "u8" => k * 2500,
        "i1" => -5 * k,
        _ => -k,
    };

    [Theory]
    [InlineData("b1", ScalarType.Bool)]
    [InlineData("u1", ScalarType.Byte)]
    [InlineData("i1", ScalarType.Int8)]
    [InlineData("lei2", ScalarType.Int16)]
    [InlineData("bei2", ScalarType.Int16)]
    [InlineData("leu2", ScalarType.Int32)]
    [InlineData("beu2", ScalarType.Int32)]
    [InlineData("lei4", ScalarType.Int32)]
    [InlineData("beu4", ScalarType.Int64)]
    [InlineData("lei8", ScalarType.Int64)]
    [InlineData("bei8", ScalarType.Int64)]
    [InlineData("leu8", ScalarType.Int64)]
    [InlineData("lef2", ScalarType.Float16)]
    [InlineData("lef4", ScalarType.Float32)]
    [InlineData("bef4", ScalarType.Float32)]
    [InlineData("lef8", ScalarType.Float64)]
    [InlineData("bef8", ScalarType.Float64)]
    public void ReadsWhatNumpyWrote(string name, ScalarType dtype)
    {
        string kind = name.Length > 2 ? name[2..] : name;
        foreach (string order in new[] { "c", "f" })
        {
            using var tensor = Npy.Read(Path.Combine(Data, $"{name}_{order}.npy"));
            Assert.Equal(dtype, tensor.dtype);
            Assert.Equal([2L, 3, 4], tensor.shape);
            var values = tensor.to(ScalarType.Float64).flatten().data<double>().ToArray();
            for (int k = 0; k < 24; k++) Assert.Equal(Expected(kind, k), values[k]);
        }
    }

    [Fact]
    public void ScalarsEmptyArraysAndHeaders()
    {
        using (var scalar = Npy.Read(Path.Combine(Data, "scalar.npy")))
        {
            Assert.Empty(scalar.shape);
            Assert.Equal(3.5, scalar.item<double>());
        }
        using (var empty = Npy.Read(Path.Combine(Data, "empty.npy"))) Assert.Equal([0L, 3], empty.shape);
        var header = Npy.ReadHeader(Path.Combine(Data, "bef4_f.npy"));
        Assert.Equal((">f4", true), (header.Dtype, header.FortranOrder));
        Assert.Equal([2L, 3, 4], header.Shape);
        Assert.Equal(0, header.DataOffset % 64);
    }

    [Theory]
    [InlineData("stored.npz")]
    [InlineData("deflated.npz")]
    public void ReadsNumpyArchives(string file)
    {
        using var npz = Npz.Open(Path.Combine(Data, file));
        Assert.Equal(["images", "labels"], npz.Names);
        using var images = npz.Read("images");
        using var labels = npz.Read("labels");
        Assert.Equal([5L, 3, 4], images.shape);
        Assert.Equal(59, images[4, 2, 3].item<byte>());
        Assert.Equal([1L, 0, 2, 1, 0], labels.flatten().data<long>().ToArray());
        var missing = Assert.Throws<KeyNotFoundException>(() => npz.Read("masks"));
        Assert.Contains("no array 'masks' (it holds images, labels)", missing.Message);
    }

    [Fact]
    public void WhatWeWriteNumpyReads()
    {
        string path = Path.Combine(temp, "ours.npz");
        using var images = arange(2 * 3 * 5, dtype: ScalarType.Float32).view(2, 3, 5) / 7;
        using var labels = tensor(new long[] { 4, -2 });
        Npz.Write(path, new Dictionary<string, Tensor> { ["images"] = images, ["labels"] = labels });
        var check = Repo.Run("/usr/bin/python3", ["-c",
            "import numpy as np, sys; d = np.load(sys.argv[1]); " +
            "print(d['images'].dtype, d['images'].shape, repr(float(d['images'][1,2,4])), d['labels'].tolist())", path]);
        Assert.Equal(0, check.ExitCode);
        Assert.Equal($"float32 (2, 3, 5) {(double)(29f / 7):R} [4, -2]", check.Stdout.Trim());
        using var npz = Npz.Open(path);
        using var back = npz.Read("images");
        Assert.True(back.eq(images).all().item<bool>());
    }

    [Fact]
    public void MalformedFilesAreNamedWithTheirFault()
    {
        byte[] valid = File.ReadAllBytes(Path.Combine(Data, "lef4_c.npy"));
        (byte[] Bytes, string Fault)[] cases =
        [
            (valid[..5], "truncated"),
            ([.. "PK\x03\x04"u8, .. valid[4..]], "no \\x93NUMPY magic"),
            (Patch(valid, 6, 9), "format version 9.0"),
            (valid[..(valid.Length - 10)], "truncated"),
            (Replace(valid, "'<f4'", "'<c8'"), "dtype '<c8' is not supported"),
            (Replace(valid, "(2, 3, 4)", "(2,-3, 4)"), "negative extent"),
            (Replace(valid, "'fortran_order': False", "'fortran_order': 0    "), "'fortran_order' is not True or False"),
            (Replace(valid, "'shape': (2, 3, 4)", "'shapx': (2, 3, 4)"), "exactly 'descr', 'fortran_order' and 'shape'"),
        ];
        foreach (var (bytes, fault) in cases)
        {
            string path = Path.Combine(temp, "bad.npy");
            File.WriteAllBytes(path, bytes);
            var error = Assert.Throws<InvalidDataException>(() => Npy.Read(path));
            Assert.Contains(path, error.Message);
            Assert.Contains(fault, error.Message);
        }
        File.WriteAllBytes(Path.Combine(temp, "bad.npz"), valid);
        Assert.Contains("not a .npz (zip) archive", Assert.Throws<InvalidDataException>(() => Npz.Open(Path.Combine(temp, "bad.npz"))).Message);
        Assert.Contains("no such file", Assert.Throws<FileNotFoundException>(() => Npy.Read(Path.Combine(temp, "none.npy"))).Message);
    }

    static byte[] Patch(byte[] bytes, int at, byte value)
    {
        var copy = (byte[])bytes.Clone();
        copy[at] = value;
        return copy;
    }

    static byte[] Replace(byte[] bytes, string from, string to)
    {
        Assert.Equal(from.Length, to.Length);
        string text = System.Text.Encoding.Latin1.GetString(bytes);
        Assert.Contains(from, text);
        return System.Text.Encoding.Latin1.GetBytes(text.Replace(from, to));
    }

    [Fact]
    public void MutantsAreReadOrRefusedNeverCrash()
    {
        int count = Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 50_000 : 2_000;
        var random = new Random(1234);
        string[] sources = ["bef8_f.npy", "stored.npz", "deflated.npz"];
        var originals = sources.Select(s => File.ReadAllBytes(Path.Combine(Data, s))).ToArray();
        int read = 0, refused = 0;
        for (int i = 0; i < count; i++)
        {
            int which = i % sources.Length;
            byte[] mutant = (byte[])originals[which].Clone();
            if (random.Next(4) == 0) mutant = mutant[..random.Next(mutant.Length)];
            else
                for (int flips = random.Next(1, 4); flips > 0 && mutant.Length > 0; flips--)
                    mutant[random.Next(Math.Min(mutant.Length, random.Next(2) == 0 ? 160 : mutant.Length))] = (byte)random.Next(256);
            string path = Path.Combine(temp, "mutant" + Path.GetExtension(sources[which]));
            File.WriteAllBytes(path, mutant);
            try
            {
                if (path.EndsWith(".npz", StringComparison.Ordinal))
                {
                    using var npz = Npz.Open(path);
                    foreach (string name in npz.Names) npz.Read(name).Dispose();
                }
                else Npy.Read(path).Dispose();
                read++;
            }
            catch (Exception e) when (e is InvalidDataException or NotSupportedException)
            {
                refused++;
            }
        }
        Assert.Equal(count, read + refused);
        Assert.True(refused > count / 10, $"only {refused} of {count} mutants were refused: the mutations barely bite");
    }
}
