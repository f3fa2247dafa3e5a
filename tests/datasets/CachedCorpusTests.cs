using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Transforms;
using Xunit;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

public sealed class CachedCorpusTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-cache-").FullName;
    readonly TensorCorpus volumes = new("ct", arange(10 * 4 * 4 * 4, dtype: ScalarType.Float32).view(10, 1, 4, 4, 4),
        labels: arange(10), targets: (arange(10 * 64) % 3).view(10, 1, 4, 4, 4), organ: "lung", modality: "ct");

    public void Dispose()
    {
        volumes.Dispose();
        Directory.Delete(root, recursive: true);
    }

    sealed record Scale(double Factor) : ITransform
    {
        public Sample Apply(Sample sample, Random rng) => sample with { Image = sample.Image * Factor };
    }

    sealed record Window(double[] Range) : ITransform
    {
        public Sample Apply(Sample sample, Random rng) => sample with { Image = sample.Image.clamp(Range[0], Range[1]) };
    }

    [Fact]
    public void PipelinesThatDifferOnlyInAnArrayGetTheirOwnCaches()
    {
        using var narrow = CachedCorpus.Open(volumes, new Compose([new Window([0, 10])]), root);
        using var wide = CachedCorpus.Open(volumes, new Compose([new Window([0, 100])]), root);
        Assert.NotEqual(narrow.Folder, wide.Folder);
        using var sample = wide.Get(0);
        Assert.Equal(63f, sample.Image.max().item<float>());
    }

    sealed class Counting(ICorpus inner, Func<long, Exception?>? fault = null) : ICorpus
    {
        public int Reads;
        public string Name => inner.Name;
        public long Count => inner.Count;
        public Sample Get(long index)
        {
            Interlocked.Increment(ref Reads);
            if (fault?.Invoke(index) is { } e) throw e;
            return inner.Get(index);
        }
    }

    [Fact]
    public void SamplesComeBackPreprocessedAndTheCacheIsBuiltOnce()
    {
        var source = new Counting(volumes);
        using (var cached = CachedCorpus.Open(source, new Scale(2), root, samplesPerShard: 3))
        {
            Assert.Equal(10, cached.Count);
            using var sample = cached.Get(7);
            using var expected = volumes.Get(7);
            Assert.True(sample.Image.eq(expected.Image * 2).all().item<bool>());
            Assert.True(sample.Target!.eq(expected.Target!).all().item<bool>());
            Assert.Equal((expected.Meta.Source, expected.Meta.Organ, expected.Meta.Modality, "3d"), (sample.Meta.Source, sample.Meta.Organ,
                sample.Meta.Modality, sample.Meta.Dimensionality.Name));
            Assert.Equal(expected.Meta.Spacing, sample.Meta.Spacing);
            Assert.Equal([7L], sample.Meta.Labels);
            Assert.Equal(4, Directory.GetFiles(cached.Folder, "shard-*.safetensors").Length);
        }
        Assert.Equal(10, source.Reads);
        using (var again = CachedCorpus.Open(source, new Scale(2), root, samplesPerShard: 3))
            Assert.Equal(10, again.Count);
        Assert.Equal(10, source.Reads);
        // Another pipeline is another cache.
        using (var other = CachedCorpus.Open(source, new Scale(3), root, samplesPerShard: 3))
        using (var sample = other.Get(1))
        {
            Assert.Equal([1L, 4, 4, 4], sample.Image.shape);
            Assert.Equal(3 * 64.0, sample.Image.flatten()[0].item<float>());
        }
        Assert.Equal(20, source.Reads);
    }

    [Fact]
    public void ViewsOutliveTheCorpus()
    {
        Sample sample;
        using (var cached = CachedCorpus.Open(volumes, null, root)) sample = cached.Get(9);
        using (sample) Assert.Equal(9 * 64 + 63, sample.Image.max().item<float>());
    }

    [Fact]
    public void BadSamplesAreLeftOutAndListed()
    {
        var source = new Counting(volumes, i => i == 4 ? new InvalidDataException("/ct/4.nii.gz: truncated") : null);
        using var cached = CachedCorpus.Open(source, null, root);
        Assert.Equal(9, cached.Count);
        Assert.Contains(cached.Skipped, s => s.Contains("/ct/4.nii.gz: truncated"));
        using var fifth = cached.Get(4);
        Assert.Equal(5, fifth.Meta.Index);
    }

    [Fact]
    public void ConcurrentOpensOfOneCacheBuildItOnce()
    {
        // Four jobs sharing a cache folder ask for the same corpus at once: one builds, the others wait and read it.
        var source = new Counting(volumes, _ => { Thread.Sleep(20); return null; });
        var opened = new CachedCorpus[4];
        var faults = new Exception?[opened.Length];
        using var start = new Barrier(opened.Length);
        var threads = Enumerable.Range(0, opened.Length).Select(i => new Thread(() =>
        {
            start.SignalAndWait();
            try { opened[i] = CachedCorpus.Open(source, new Scale(2), root, samplesPerShard: 2); }
            catch (Exception e) { faults[i] = e; }
        })).ToArray();
        foreach (var thread in threads) thread.Start();
        foreach (var thread in threads) thread.Join();
        try
        {
            Assert.All(faults, Assert.Null);
            Assert.Equal(10, source.Reads);
            Assert.Single(opened.Select(c => c.Folder).Distinct());
            foreach (var cached in opened)
            {
                using var sample = cached.Get(9);
                Assert.Equal(2 * (9 * 64 + 63f), sample.Image.max().item<float>());
            }
            Assert.DoesNotContain(Directory.GetDirectories(root), d => d.EndsWith(".building", StringComparison.Ordinal));
        }
        finally
        {
            foreach (var cached in opened) cached?.Dispose();
        }
    }

    [Fact]
    public void AnInterruptedBuildResumesFromItsFinishedShards()
    {
        var crashing = new Counting(volumes, i => i == 7 ? new OutOfMemoryException("simulated crash") : null);
        Assert.Throws<OutOfMemoryException>(() => CachedCorpus.Open(crashing, null, root, samplesPerShard: 3));
        Assert.DoesNotContain(Directory.GetDirectories(root), d => !d.EndsWith(".building", StringComparison.Ordinal));
        var source = new Counting(volumes);
        using var cached = CachedCorpus.Open(source, null, root, samplesPerShard: 3);
        Assert.Equal(10, cached.Count);
        Assert.Equal(4, source.Reads);  // shards 0 and 1 (samples 0-5) were kept; 6-9 were read again
    }

    [Fact]
    public void ADamagedCacheIsNamedWithTheWayOut()
    {
        string folder;
        using (var cached = CachedCorpus.Open(volumes, null, root)) folder = cached.Folder;
        File.WriteAllText(Path.Combine(folder, "shard-00000.safetensors"), "garbage");
        var error = Assert.Throws<InvalidDataException>(() => CachedCorpus.Open(volumes, null, root));
        Assert.Contains(folder, error.Message);
        Assert.Contains("delete the folder to rebuild it", error.Message);
    }
}
