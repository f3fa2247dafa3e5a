using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

public sealed class DataLoaderTests : IDisposable
{
    // Each image's pixels all hold its own index, so a batch says which samples it holds.
    static TensorCorpus Indexed(string name, long count, params long[] shape) =>
        new(name, arange(count, dtype: ScalarType.Float32).view([count, .. Enumerable.Repeat(1L, shape.Length)]).expand([count, .. shape]).contiguous(),
            labels: arange(count) % 3, organ: name.StartsWith('v') ? "lung" : "chest", modality: "ct");

    readonly TensorCorpus small = Indexed("small", 50, 1, 4, 4);
    readonly TensorCorpus other = Indexed("other", 30, 1, 4, 4);
    readonly TensorCorpus volumes = Indexed("volumes", 20, 1, 3, 4, 4);

    public void Dispose()
    {
        small.Dispose();
        other.Dispose();
        volumes.Dispose();
    }

    static long[] Ids(Batch batch) => [.. batch.Images.flatten(1)[.., 0].to(ScalarType.Int64).data<long>()];

    static List<long[]> Take(IEnumerable<Batch> batches, int count)
    {
        var ids = new List<long[]>();
        foreach (var batch in batches.Take(count))
            using (batch) ids.Add(Ids(batch));
        return ids;
    }

    [Fact]
    public void OrderIsTheSameForAnyNumberOfWorkers()
    {
        var reference = Take(new DataLoader([new(small)], new LoaderOptions(8, Seed: 3, Workers: 0)).Batches(), 20);
        foreach (int workers in new[] { 1, 3 })
            Assert.Equal(reference, Take(new DataLoader([new(small)], new LoaderOptions(8, Seed: 3, Workers: workers)).Batches(), 20));
        Assert.NotEqual(reference, Take(new DataLoader([new(small)], new LoaderOptions(8, Seed: 4, Workers: 0)).Batches(), 20));
    }

    [Fact]
    public void EveryPassVisitsEverySampleOnceAndReshuffles()
    {
        var ids = Take(new DataLoader([new(small)], new LoaderOptions(10, Seed: 1, Workers: 2)).Batches(), 10).SelectMany(b => b).ToArray();
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), ids[..50].Order());
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), ids[50..].Order());
        Assert.NotEqual(ids[..50], ids[50..]);
    }

    [Fact]
    public void ResumingAtABatchGivesWhatTheUninterruptedRunGave()
    {
        var loader = new DataLoader([new(small, 1), new(other, 2)], new LoaderOptions(7, Seed: 9, Workers: 2));
        var whole = Take(loader.Batches(), 30);
        var resumed = Take(loader.Batches(start: 17), 13);
        Assert.Equal(whole[17..], resumed);
        using var batch = loader.Batches(start: 17).First();
        Assert.Equal(17, batch.Index);
    }

    [Fact]
    public void RanksSeeDisjointShardsThatCoverThePass()
    {
        var seen = new List<long>[3];
        for (int rank = 0; rank < 3; rank++)
        {
            var loader = new DataLoader([new(small)], new LoaderOptions(17, Seed: 5, Rank: rank, WorldSize: 3, Workers: 1));
            seen[rank] = Take(loader.Batches(), 1).SelectMany(b => b).ToList();  // ⌈50/3⌉ = 17 draws: one pass
        }
        Assert.Equal(Enumerable.Range(0, 50).Select(i => (long)i), seen.SelectMany(s => s).Distinct().Order());
        // 51 draws for 50 samples: DistributedSampler pads one by wrapping, so exactly one sample repeats.
        Assert.Equal(51, seen.Sum(s => s.Count));
    }

    [Fact]
    public void MixtureFollowsWeightsAndNeverMixesDimensionalities()
    {
        var loader = new DataLoader([new(small, 1), new(other, 3), new(volumes, 1)], new LoaderOptions(16, Seed: 2, Workers: 2));
        Assert.Equal(2, loader.GroupKeys.Count);
        int batches2d = 0, batches3d = 0, fromSmall = 0, fromOther = 0;
        foreach (var batch in loader.Batches().Take(200))
            using (batch)
            {
                Assert.All(batch.Metas, m => Assert.Equal(batch.Dimensionality, m.Dimensionality));
                if (batch.Dimensionality.IsVolume)
                {
                    batches3d++;
                    Assert.Equal([16L, 1, 3, 4, 4], batch.Images.shape);
                    continue;
                }
                batches2d++;
                fromSmall += batch.Metas.Count(m => m.Corpus == "small");
                fromOther += batch.Metas.Count(m => m.Corpus == "other");
            }
        // The 2D group weighs 4 of 5; within it, other weighs 3 of 4.
        Assert.InRange(batches2d / 200.0, 0.72, 0.88);
        Assert.InRange(fromOther / (double)(fromSmall + fromOther), 0.70, 0.80);
        Assert.True(batches3d > 0);
    }

    sealed class Faulty(ICorpus inner, Func<long, bool> bad) : ICorpus
    {
        public string Name => inner.Name;
        public long Count => inner.Count;
        public Sample Get(long index) => bad(index)
            ? throw new InvalidDataException($"/data/{Name}/{index}.npy: truncated: the data ends before byte 64")
            : inner.Get(index);
    }

    [Fact]
    public void BadSamplesAreSkippedCountedAndReplaced()
    {
        var loader = new DataLoader([new(new Faulty(small, i => i % 10 == 3))], new LoaderOptions(10, Seed: 1, Workers: 2));
        var ids = Take(loader.Batches(), 10).SelectMany(b => b).ToArray();
        Assert.Equal(100, ids.Length);
        Assert.DoesNotContain(ids, i => i % 10 == 3);
        Assert.True(loader.Skipped["small"] >= 5);
        Assert.Contains(loader.SkipReasons, r => r.Contains("/data/small/3.npy: truncated"));
    }

    [Fact]
    public void StrictModeStopsAtTheFirstBadSampleAndNamesIt()
    {
        var loader = new DataLoader([new(new Faulty(small, i => i == 7))], new LoaderOptions(10, Seed: 1, Workers: 2, Strict: true));
        var error = Assert.Throws<InvalidDataException>(() => Take(loader.Batches(), 10));
        Assert.Contains("/data/small/7.npy", error.Message);
        Assert.Contains("strict", error.Message);
    }

    [Fact]
    public void ACorpusOfOnlyBadFilesIsAClearError()
    {
        var error = Assert.Throws<InvalidDataException>(() => new DataLoader([new(new Faulty(small, _ => true))], new LoaderOptions(4)));
        Assert.Contains("corpus 'small'", error.Message);
        Assert.Contains("truncated", error.Message);
    }

    sealed class Ragged(ICorpus inner) : ICorpus
    {
        public string Name => inner.Name;
        public long Count => inner.Count;
        public Sample Get(long index)
        {
            using var sample = inner.Get(index);
            long size = index % 2 == 0 ? 4 : 6;
            return sample with { Image = zeros(1, size, size) + index };
        }
    }

    [Fact]
    public void SamplesOfAnotherShapeAreNamedAndSkipped()
    {
        var loader = new DataLoader([new(new Ragged(small))], new LoaderOptions(5, Workers: 0));
        var ids = Take(loader.Batches(), 4).SelectMany(b => b).ToArray();
        Assert.All(ids, i => Assert.Equal(0, i % 2));
        Assert.Contains(loader.SkipReasons, r => r.Contains("differ from its corpus's") && r.Contains("add a crop"));
    }

    sealed class Shift : ITransform
    {
        public Sample Apply(Sample sample, Random rng)
        {
            int s = rng.Next(2);
            return sample with
            {
                Image = sample.Image.roll(s, 2),
                Coordinates = sample.Coordinates?.roll(s, 2),
            };
        }
    }

    [Fact]
    public void ViewsCarryTheirOwnAugmentationAndCoordinates()
    {
        var loader = new DataLoader([new(small, Transform: new Shift(), Views: 2, TrackCoordinates: true)], new LoaderOptions(8, Seed: 4, Workers: 1));
        using var batch = loader.Batches().First();
        Assert.Equal(2, batch.Views.Count);
        foreach (var view in batch.Views)
        {
            Assert.Equal([8L, 1, 4, 4], view.Images.shape);
            Assert.Equal([8L, 2, 4, 4], view.Coordinates!.shape);
        }
        // Coordinates of view pixels are the original pixels they show: row index unchanged, column rolled.
        var columns0 = batch.Views[0].Coordinates![.., 1, 0, 0];
        var columns1 = batch.Views[1].Coordinates![.., 1, 0, 0];
        Assert.True(columns0.ne(columns1).any().item<bool>(), "two views of 8 samples should differ somewhere");
        Assert.True(batch.Views[0].Coordinates![.., 0].eq(arange(4, dtype: ScalarType.Float32).view(1, 4, 1)).all().item<bool>());
    }

    [Fact]
    public void EachViewCanHaveItsOwnPipeline()
    {
        // FixMatch's weak and strong views: here the sample as it is and its values doubled.
        var loader = new DataLoader([new(small, ViewTransforms: [new Compose([]), new ScaleIntensityRange(0, 1, 0, 2)])], new LoaderOptions(8, Seed: 4,
            Workers: 1));
        using var batch = loader.Batches().First();
        Assert.Equal(2, batch.Views.Count);
        Assert.True(batch.Views[1].Images.eq(batch.Views[0].Images * 2).all().item<bool>(), "view 1 is view 0 through its own pipeline");
        Assert.Contains("give either view transforms (2 views) or a transform and a number of views, not both",
            Assert.Throws<ArgumentException>(() => new DataLoader([new(small, Views: 2, ViewTransforms: [new Compose([]), new Compose([])])],
                new LoaderOptions(4))).Message);
        Assert.Contains("view transforms must name at least one pipeline",
            Assert.Throws<ArgumentException>(() => new DataLoader([new(small, ViewTransforms: [])], new LoaderOptions(4))).Message);
    }

    [Fact]
    public void APassIsOrderedShardedAndEndsWithAShortBatch()
    {
        var loader = new DataLoader([new(small)], new LoaderOptions(8, Workers: 2, Rank: 1, WorldSize: 2));
        var batches = new List<long[]>();
        foreach (var batch in loader.Pass())
            using (batch) batches.Add(Ids(batch));
        Assert.Equal(Enumerable.Range(0, 25).Select(i => 2L * i + 1), batches.SelectMany(b => b));
        Assert.Single(batches[^1]);
    }

    [Fact]
    public void BreakingOffStopsTheWorkersAndFreesTheirBatches()
    {
        var loader = new DataLoader([new(volumes)], new LoaderOptions(4, Workers: 3, Prefetch: 4));
        for (int round = 0; round < 20; round++)
            using (var batch = loader.Batches().First()) Assert.Equal(4, batch.Count);
    }

    [Fact]
    public void BadArgumentsAreNamed()
    {
        Assert.Contains("batch size 0", Assert.Throws<ArgumentException>(() => new DataLoader([new(small)], new LoaderOptions(0))).Message);
        Assert.Contains("rank 2 of world size 2", Assert.Throws<ArgumentException>(() => new DataLoader([new(small)], new LoaderOptions(4, Rank: 2,
            WorldSize: 2))).Message);
        Assert.Contains("corpus 'small': weight -1", Assert.Throws<ArgumentException>(() => new DataLoader([new(small, -1)], new LoaderOptions(4))).Message);
    }
}
