using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>Bad inputs to the dense heads give errors that name the sample or file and what is wrong; good files go in and out.</summary>
public sealed class DenseHeadInputTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dense-input-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => SegmentationHeadTests.Config;

    static string Losses(FineTuner tuner, TensorCorpus corpus)
    {
        using var batch = new DataLoader([new LoaderSource(corpus)], new LoaderOptions((int)corpus.Count, Workers: 1, Strict: true)).Batches().First();
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() =>
        {
            var latents = tuner.Model.forward(batch.Images, [.. batch.Metas.Select(m => new LatentKey(m.Organ, m.Modality, tuner.Head.Task))]);
            tuner.Head.Losses(tuner.Head.call(new HeadInput(tuner.Model, latents, batch.Images.shape, batch.Metas, batch.Images)), batch);
        });
        return e.Message;
    }

    [Fact]
    public void ALabelTheHeadDoesNotHaveIsNamed()
    {
        using var scope = NewDisposeScope();
        var masks = zeros([2, 1, 8, 8], ScalarType.Int64);
        masks[1, 0, 2, 3] = tensor(2L);
        using var corpus = new TensorCorpus("masks", zeros(2, 1, 8, 8), targets: masks);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2));
        var message = Losses(tuner, corpus);
        Assert.Contains("masks[1]", message);
        Assert.Contains("label 2 is outside the head's 2 classes", message);
    }

    [Fact]
    public void ATargetOffTheHeadsGridIsNamed()
    {
        using var scope = NewDisposeScope();
        using var corpus = new TensorCorpus("pairs", zeros(2, 1, 8, 8), targets: zeros(2, 1, 8, 8));
        using var tuner = new FineTuner(new MedformerModel(Config), new ImageToImageHead(Config, ImageToImageHead.SuperResolution, scale: 2));
        var message = Losses(tuner, corpus);
        Assert.Contains("target [1,8,8] does not match the input [1,8,8]", message);
        Assert.Contains("expects [1,16,16]", message);
        using var labels = new TensorCorpus("labels", zeros(2, 1, 8, 8), targets: zeros([2, 1, 8, 8], ScalarType.Int64));
        using var restoration = new FineTuner(new MedformerModel(Config), new ImageToImageHead(Config));
        Assert.Contains("needs float target images", Losses(restoration, labels));
    }

    [Fact]
    public void AVolumeSmallerThanThePatchOrOfTheOtherDimensionalityIsNamed()
    {
        using var scope = NewDisposeScope();
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2, dimensionality: Dimensionality.Volume));
        var small = Assert.Throws<ArgumentException>(() => tuner.Predict(zeros([1, 1, 2, 8, 8])));
        Assert.Contains("multiple of the patch size 4", small.Message);
        // By sliding windows the small volume is padded to the window, as MONAI does.
        Assert.Equal([1L, 1, 2, 8, 8], tuner.PredictSlidingWindow(zeros([1, 1, 2, 8, 8]), [8, 8, 8]).shape);
        Assert.Contains("multiple of the patch size 4", Assert.Throws<ArgumentException>(() => tuner.PredictSlidingWindow(zeros([1, 1, 8, 8, 8]), [2, 8,
            8])).Message);
        var flat = Assert.Throws<ArgumentException>(() => tuner.Predict(zeros(1, 1, 8, 8)));
        Assert.Contains("takes 3D volumes [C,D,H,W]; this input is 2D", flat.Message);
        using var classifier = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3));
        Assert.Contains("use Predict", Assert.Throws<ArgumentException>(() => classifier.PredictSlidingWindow(zeros(1, 1, 8, 8), [8, 8])).Message);
    }

    [Fact]
    public void NiftiFilesAreCheckedAgainstTheHeadsDimensionalityAndResultsWrittenBack()
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(8);
        string slice = Path.Combine(root, "slice.nii.gz"), volume = Path.Combine(root, "volume.nii.gz");
        NiftiWriter.Write(slice, rand(12, 16), [0.8, 0.7]);
        NiftiWriter.Write(volume, rand(8, 12, 16), [2.0, 0.8, 0.7]);

        var e = Assert.Throws<ArgumentException>(() => DenseFiles.Read(slice, Dimensionality.Volume));
        Assert.Contains(slice, e.Message);
        Assert.Contains("a 2D image [12,16], and the head takes 3D volumes", e.Message);
        Assert.Contains("a 3D volume [8,12,16], and the head takes 2D images", Assert.Throws<ArgumentException>(() => DenseFiles.Read(volume,
            Dimensionality.Image)).Message);

        using var input = DenseFiles.Read(volume, Dimensionality.Volume, organ: "abdomen", modality: "pet");
        Assert.Equal([1L, 8, 12, 16], input.Image.shape);
        Assert.Equal("abdomen", input.Meta.Organ);
        using var image2d = DenseFiles.Read(slice, Dimensionality.Image);
        Assert.Equal([1L, 12, 16], image2d.Image.shape);

        string mask = Path.Combine(root, "mask.nii.gz");
        DenseFiles.WriteMask(mask, (input.Image > 0.5).to(ScalarType.Int64), input);
        using var written = MedicalFile.Read(mask);
        Assert.Equal([8L, 12, 16], written.Voxels.shape);
        Assert.Equal([2.0, 0.8, 0.7], written.Spacing.Select(s => Math.Round(s, 6)));
        Assert.True(written.Voxels.to(ScalarType.Float32).eq((input.Image[0] > 0.5).to(ScalarType.Float32)).all().item<bool>());

        string restored = Path.Combine(root, "restored.nii.gz");
        string preview = DenseFiles.WriteImage(restored, input.Image.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3), input, scale: 2);
        Assert.Equal(Path.Combine(root, "restored.png"), preview);
        using var fine = MedicalFile.Read(restored);
        Assert.Equal([16L, 24, 32], fine.Voxels.shape);
        Assert.Equal([1.0, 0.4, 0.35], fine.Spacing.Select(s => Math.Round(s, 6)));
        var png = File.ReadAllBytes(preview);
        Assert.Equal([0x89, (byte)'P', (byte)'N', (byte)'G'], png[..4]);
        Assert.Equal(32, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(16)));   // width
        Assert.Equal(24, System.Buffers.Binary.BinaryPrimitives.ReadInt32BigEndian(png.AsSpan(20)));   // height
        // Python's zlib checks every chunk's CRC and inflates the pixels: 24 rows of a filter byte and 32 grey bytes.
        const string check = "import struct, sys, zlib\n"
            + "d = open(sys.argv[1], 'rb').read(); i = 8; data = b''\n"
            + "while i < len(d):\n"
            + "    n, t = struct.unpack('>I4s', d[i:i + 8]); body = d[i + 8:i + 8 + n]\n"
            + "    assert struct.unpack('>I', d[i + 8 + n:i + 12 + n])[0] == zlib.crc32(t + body), t\n"
            + "    data += body if t == b'IDAT' else b''; i += 12 + n\n"
            + "raw = zlib.decompress(data); print(len(raw), min(raw[1:33]), max(raw))";
        var python = Repo.Run("/usr/bin/python3", ["-c", check, preview]);
        Assert.True(python.ExitCode == 0, python.Stderr);
        Assert.StartsWith($"{24 * 33} ", python.Stdout.Trim());
    }
}
