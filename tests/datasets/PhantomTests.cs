using System.Diagnostics;
using System.Security.Cryptography;
using Medformer.Datasets.Corpora;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>The default 2D phantom (4,000 / 500 / 1,000) and a small 3D one, generated once for the class.</summary>
public sealed class PhantomFixture : IDisposable
{
    public static PhantomSpec Small3d { get; } = Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1"
        ? PhantomSpec.Default3d
        : PhantomSpec.Default3d with { Train = 300, Val = 50, Test = 300 };

    public Dictionary<string, Tensor> Arrays2d { get; }
    public Dictionary<string, Tensor> Arrays3d { get; }
    public TimeSpan Time2d { get; }
    public TimeSpan Time3d { get; }

    public PhantomFixture()
    {
        var clock = Stopwatch.StartNew();
        Arrays2d = Phantom.Generate(PhantomSpec.Default2d);
        Time2d = clock.Elapsed;
        clock.Restart();
        Arrays3d = Phantom.Generate(Small3d);
        Time3d = clock.Elapsed;
    }

    public void Dispose()
    {
        foreach (var t in Arrays2d.Values.Concat(Arrays3d.Values)) t.Dispose();
    }
}

/// <summary>
/// The phantom corpus: balanced, deterministic, its class in shape and texture and not in the mean intensity, its
/// masks the shapes it drew, and readable by <see cref="MedMnistCorpus"/> with each sample's organ and modality.
/// </summary>
public sealed class PhantomTests(PhantomFixture fixture, ITestOutputHelper output) : IClassFixture<PhantomFixture>, IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-phantom-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [Fact]
    public void ClassesAndStylesAreBalancedInEverySplit()
    {
        output.WriteLine($"generation: 2D default {fixture.Time2d.TotalSeconds:F2} s, 3D " +
            $"{PhantomFixture.Small3d.Train}/{PhantomFixture.Small3d.Val}/{PhantomFixture.Small3d.Test} {fixture.Time3d.TotalSeconds:F2} s");
        foreach (var (split, count) in new[] { ("train", 4000), ("val", 500), ("test", 1000) })
        {
            var a = fixture.Arrays2d;
            Assert.Equal([count, 28L, 28], a[$"{split}_images"].shape);
            Assert.Equal([count, 28L, 28], a[$"{split}_masks"].shape);
            Assert.Equal([count, 1L], a[$"{split}_labels"].shape);
            Assert.All(Counts(a[$"{split}_labels"], 10), c => Assert.Equal(count / 10, c));
            Assert.All(Counts(a[$"{split}_organ"], 5), c => Assert.Equal(count / 5, c));
            Assert.True(TensorEquality.Same(a[$"{split}_organ"], a[$"{split}_modality"]));
            // Each class equally often in each style: the style (which the mean intensity shows) says nothing of the class.
            using var pairs = a[$"{split}_labels"].squeeze(1).to(ScalarType.Int64) * 5 + a[$"{split}_organ"].to(ScalarType.Int64);
            Assert.All(Counts(pairs, 50), c => Assert.Equal(count / 50, c));
        }
        var train3d = fixture.Arrays3d["train_labels"];
        Assert.Equal([PhantomFixture.Small3d.Train, 28L, 28, 28], fixture.Arrays3d["train_images"].shape);
        Assert.All(Counts(train3d, 10), c => Assert.Equal(PhantomFixture.Small3d.Train / 10, c));
        Assert.All(Counts(fixture.Arrays3d["train_organ"], 3), c => Assert.InRange(c, PhantomFixture.Small3d.Train / 3, PhantomFixture.Small3d.Train / 3 + 1));
    }

    [Fact]
    public void TheSameSpecGivesTheSameBytesAndAnotherSeedOtherBytes()
    {
        foreach (var spec in new[] { new PhantomSpec(Dimensionality.Image, 28, 300, 40, 60), new PhantomSpec(Dimensionality.Volume, 28, 30, 10, 10),
            new PhantomSpec(Dimensionality.Image, 64, 50, 10, 10) })
        {
            var first = Digests(spec);
            var second = Digests(spec);
            Assert.Equal(first, second);
            var other = Digests(spec with { Seed = spec.Seed + 1 });
            Assert.NotEqual(first["train_images"], other["train_images"]);
        }
        // A split depends on its own size and the seed only, not on the other splits.
        var small = Phantom.Generate(new PhantomSpec(Dimensionality.Image, 28, 0, 500, 0));
        try
        {
            Assert.Equal(Sha256(fixture.Arrays2d["val_images"]), Sha256(small["val_images"]));
            Assert.Equal(Sha256(fixture.Arrays2d["val_masks"]), Sha256(small["val_masks"]));
        }
        finally
        {
            foreach (var t in small.Values) t.Dispose();
        }
    }

    [Fact]
    public void MeanIntensityDoesNotTellTheClass()
    {
        foreach (var arrays in new[] { fixture.Arrays2d, fixture.Arrays3d })
        {
            using var scope = NewDisposeScope();
            Tensor MeanIntensity(string split) => arrays[$"{split}_images"].flatten(1).to(ScalarType.Float32).mean([1L]);
            Tensor Compactness(string split) => MaskCompactness(arrays[$"{split}_masks"]);
            var trainLabels = arrays["train_labels"].squeeze(1).to(ScalarType.Int64);
            var testLabels = arrays["test_labels"].squeeze(1).to(ScalarType.Int64);
            int bins = (int)Math.Max(5, trainLabels.shape[0] / 200);
            double byMean = BinnedAccuracy(MeanIntensity("train"), trainLabels, MeanIntensity("test"), testLabels, bins);
            // The control: the same classifier on a feature that carries part of the class (how much of its bounding
            // box the shape fills: a ring or a cross less than an ellipse or a rectangle) finds it.
            double byShape = BinnedAccuracy(Compactness("train"), trainLabels, Compactness("test"), testLabels, bins);
            output.WriteLine($"{arrays["train_images"].dim() - 1}D, {bins} bins: test accuracy from mean intensity {byMean:P1}, from mask compactness " +
                $"{byShape:P1} (chance 10%, {testLabels.shape[0]} test samples)");
            Assert.True(byMean < 0.13, $"mean intensity predicts the class with accuracy {byMean:P1}");
            Assert.True(byShape > 0.2, $"the control classifier reached only {byShape:P1}");
        }
    }

    [Fact]
    public void MasksAreTheShapesDrawn()
    {
        foreach (var (axes, count) in new[] { (2, 1000), (3, 100) })
        {
            using var scope = NewDisposeScope();
            using var split = PhantomGenerator.Generate(axes, 28, count, 5);
            var masks = split.Masks.flatten(1).to(ScalarType.Float32);
            var area = masks.sum([1L]).data<float>().ToArray();
            var centers = split.Centers.data<float>().ToArray();
            var halves = split.HalfSizes.data<float>().ToArray();
            var labels = split.Labels.data<byte>().ToArray();
            var grid = Grid(axes, 28);
            var centroid = (Checked.matmul(masks, grid) / masks.sum([1L], keepdim: true)).data<float>().ToArray();
            double[] unitArea = axes == 2
                ? [Math.PI, 1.7 * 1.7, Math.PI * (1 - 0.55 * 0.55), 2 * 1.4 - 0.49, 2]
                : [4 * Math.PI / 3, Math.Pow(1.7, 3), 4 * Math.PI / 3 * (1 - 0.216), 3 * 0.98 - 2 * 0.343, 2 * Math.PI / 3];
            var ratios = new List<double>[5];
            for (int k = 0; k < 5; k++) ratios[k] = [];
            for (int i = 0; i < count; i++)
            {
                int kind = labels[i] / 2;
                double volume = 1;
                for (int d = 0; d < axes; d++) volume *= halves[i * axes + d];
                ratios[kind].Add(area[i] / (unitArea[kind] * volume));
                if (kind < 4)
                    for (int d = 0; d < axes; d++)
                        Assert.True(Math.Abs(centroid[i * axes + d] - centers[i * axes + d]) < 0.75,
                            $"{axes}D sample {i} (shape {kind}): mask centroid {centroid[i * axes + d]:F2} vs centre {centers[i * axes + d]:F2} on axis {d}");
            }
            for (int k = 0; k < 5; k++)
            {
                output.WriteLine($"{axes}D shape {k}: mask / analytic area: mean {ratios[k].Average():F3}, range {ratios[k].Min():F2} to {ratios[k].Max():F2}");
                Assert.InRange(ratios[k].Average(), 0.93, 1.07);
                Assert.All(ratios[k], r => Assert.InRange(r, 0.55, 1.45));
            }
            // Never on the border: the whole shape is in the image.
            var border = split.Masks.clone();
            for (int d = 1; d <= axes; d++) border.narrow(d, 1, 26).zero_();
            Assert.Equal(0, border.to(ScalarType.Int64).sum().item<long>());
        }
    }

    [Fact]
    public void StripedShapesAreTexturedAndSmoothOnesAreNot()
    {
        using var scope = NewDisposeScope();
        var a = fixture.Arrays2d;
        var images = a["train_images"].flatten(1).to(ScalarType.Float32);
        var masks = a["train_masks"].flatten(1).to(ScalarType.Float32);
        var n = masks.sum([1L]);
        var mean = (images * masks).sum([1L]) / n;
        var spread = ((images - mean.unsqueeze(1)).square() * masks).sum([1L]) / n;
        var striped = a["train_labels"].squeeze(1).remainder(2) == 1;
        var styles = a["train_organ"];
        for (int s = 0; s < 5; s++)
        {
            var inStyle = styles == s;
            double stripedSpread = spread.masked_select(inStyle.logical_and(striped)).mean().item<float>();
            double smoothSpread = spread.masked_select(inStyle.logical_and(striped.logical_not())).mean().item<float>();
            output.WriteLine($"style {s}: variance inside the shape, striped {stripedSpread:F0} vs smooth {smoothSpread:F0}");
            Assert.True(stripedSpread > 1.25 * smoothSpread, $"style {s}: striped {stripedSpread:F0}, smooth {smoothSpread:F0}");
        }
    }

    [Fact]
    public void TheCorpusReadsThePhantomWithEachSamplesOrganAndModality()
    {
        foreach (var spec in new[] { new PhantomSpec(Dimensionality.Image, 28, 200, 30, 40), new PhantomSpec(Dimensionality.Volume, 28, 20, 6, 6) })
        {
            string path = Phantom.Ensure(spec, folder);
            Assert.Equal(spec.FileName, Path.GetFileName(path));
            using var corpus = MedMnistCorpus.Open(path, "val");
            Assert.Equal(($"phantom{spec.Dimensionality}", (long)spec.Val, "mapped", true), (corpus.Name, corpus.Count, corpus.Backing, corpus.HasMasks));
            var arrays = Phantom.Generate(spec);
            try
            {
                var organs = Phantom.Subset(spec).Organs;
                var modalities = Phantom.Subset(spec).Modalities;
                for (long i = 0; i < corpus.Count; i++)
                {
                    using var sample = corpus.Get(i);
                    int style = arrays["val_organ"][i].item<byte>();
                    Assert.Equal((organs[style], modalities[style], spec.Dimensionality), (sample.Meta.Organ, sample.Meta.Modality,
                        sample.Meta.Dimensionality));
                    Assert.Equal([(long)arrays["val_labels"][i, 0].item<byte>()], sample.Meta.Labels);
                    using var image = arrays["val_images"][i].unsqueeze(0).to(ScalarType.Float32) / 255f;
                    Assert.True(TensorEquality.Same(sample.Image, image));
                    Assert.Equal(ScalarType.Int64, sample.Target!.dtype);
                    using var mask = arrays["val_masks"][i].unsqueeze(0).to(ScalarType.Int64);
                    Assert.True(TensorEquality.Same(sample.Target, mask));
                    Assert.EndsWith($"{spec.FileName}:val_images[{i}]", sample.Meta.Source);
                }
            }
            finally
            {
                foreach (var t in arrays.Values) t.Dispose();
            }
        }
        Assert.Equal(["abdomen", "brain", "chest", "colon", "breast"], Phantom.Subset(PhantomSpec.Default2d).Organs);
        Assert.Equal(["ct", "mri", "xray", "pathology", "ultrasound"], Phantom.Subset(PhantomSpec.Default2d).Modalities);
        Assert.Equal(["ct", "mri", "pet"], Phantom.Subset(PhantomSpec.Default3d).Modalities);
        Assert.Equal("ring, striped", Phantom.Subset(PhantomSpec.Default2d).Labels[5]);
        Assert.Equal("cone, smooth", Phantom.Subset(PhantomSpec.Default3d).Labels[8]);
    }

    [Fact]
    public void EnsureWritesOnceAndReplacesAStaleFile()
    {
        var spec = new PhantomSpec(Dimensionality.Image, 28, 50, 10, 10);
        string path = Phantom.Ensure(spec, folder);
        var bytes = File.ReadAllBytes(path);
        // An mtime set by hand, long past: a rewrite (whenever it happens) moves it, with no sleep to order the events.
        var past = new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(path, past);
        Assert.Equal(path, Phantom.Ensure(spec, folder));
        Assert.Equal(past, File.GetLastWriteTimeUtc(path));  // the current file is left alone

        // Another spec under the same name (another seed): other bytes, which Ensure replaces with the spec's own.
        Phantom.Write(path, spec with { Seed = 99 });
        Assert.NotEqual(bytes, File.ReadAllBytes(path));
        Assert.Equal(path, Phantom.Ensure(spec, folder));
        Assert.Equal(bytes, File.ReadAllBytes(path));
        using (var corpus = MedMnistCorpus.Open(path, "train"))
            Assert.Equal(Phantom.Subset(spec).Splits, corpus.Subset.Splits);

        Assert.Throws<ArgumentException>(() => Phantom.Ensure(spec with { Size = 8 }, folder));
    }

    static long[] Counts(Tensor values, int classes)
    {
        using var counts = values.flatten().to(ScalarType.Int64).bincount(null, classes);
        return counts.data<long>().ToArray();
    }

    Dictionary<string, string> Digests(PhantomSpec spec)
    {
        var arrays = Phantom.Generate(spec);
        try
        {
            return arrays.ToDictionary(p => p.Key, p => Sha256(p.Value));
        }
        finally
        {
            foreach (var t in arrays.Values) t.Dispose();
        }
    }

    static string Sha256(Tensor t)
    {
        using var contiguous = t.contiguous();
        return Convert.ToHexString(SHA256.HashData(contiguous.bytes));
    }

    static Tensor Grid(int axes, int size)
    {
        int points = (int)Math.Pow(size, axes);
        var values = new float[points * axes];
        for (int p = 0; p < points; p++)
            for (int axis = axes - 1, rest = p; axis >= 0; axis--, rest /= size)
                values[p * axes + axis] = rest % size;
        return tensor(values, [points, axes]);
    }

    /// <summary>Each mask's area over the area of its axis-aligned bounding box.</summary>
    static Tensor MaskCompactness(Tensor masks)
    {
        int axes = (int)masks.dim() - 1, size = (int)masks.shape[1];
        long count = masks.shape[0], points = masks[0].numel();
        var bytes = masks.contiguous().data<byte>().ToArray();
        var result = new float[count];
        for (long i = 0; i < count; i++)
        {
            var low = Enumerable.Repeat(size, axes).ToArray();
            var high = new int[axes];
            long area = 0;
            for (long p = 0; p < points; p++)
            {
                if (bytes[i * points + p] == 0) continue;
                area++;
                for (int axis = axes - 1, rest = (int)p; axis >= 0; axis--, rest /= size)
                {
                    low[axis] = Math.Min(low[axis], rest % size);
                    high[axis] = Math.Max(high[axis], rest % size);
                }
            }
            double box = 1;
            for (int axis = 0; axis < axes; axis++) box *= high[axis] - low[axis] + 1;
            result[i] = (float)(area / box);
        }
        return tensor(result);
    }

    /// <summary>
    /// As good a classifier as one feature allows at this sample size: the training feature's quantiles cut it into
    /// bins, and each bin predicts its most frequent training class. Returns the test accuracy.
    /// </summary>
    static double BinnedAccuracy(Tensor trainFeature, Tensor trainLabels, Tensor testFeature, Tensor testLabels, int bins)
    {
        float[] train = trainFeature.data<float>().ToArray(), test = testFeature.data<float>().ToArray();
        long[] trainY = trainLabels.data<long>().ToArray(), testY = testLabels.data<long>().ToArray();
        var sorted = train.Order().ToArray();
        var edges = Enumerable.Range(1, bins - 1).Select(k => sorted[k * sorted.Length / bins]).ToArray();
        int Bin(float x) => edges.Count(e => x >= e);
        var counts = new int[bins, 10];
        for (int i = 0; i < train.Length; i++) counts[Bin(train[i]), trainY[i]]++;
        var majority = Enumerable.Range(0, bins).Select(b => Enumerable.Range(0, 10).MaxBy(c => counts[b, c])).ToArray();
        return test.Select((x, i) => majority[Bin(x)] == testY[i] ? 1.0 : 0.0).Average();
    }
}
