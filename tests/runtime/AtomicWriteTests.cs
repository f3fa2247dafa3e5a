using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Eval.Protocols;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>Files written whole or not at all (<see cref="AtomicFile"/>), and the writers that use it: no fixed temporary names, none left behind.</summary>
public sealed class AtomicWriteTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-atomic-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static void NoTemporaries(string folder) =>
        Assert.DoesNotContain(Directory.GetFiles(folder, "*", SearchOption.AllDirectories), f => f.Contains(".tmp", StringComparison.Ordinal));

    [Fact]
    public void ConcurrentWritersEachLandWhole()
    {
        string path = Path.Combine(root, "settings.json");
        var texts = Enumerable.Range(0, 16).Select(i => new string((char)('a' + i), 100_000 + i)).ToArray();
        Parallel.ForEach(texts, text => AtomicFile.WriteAllText(path, text));
        Assert.Contains(File.ReadAllText(path), texts);
        NoTemporaries(root);
    }

    [Fact]
    public void AFailedWriteLeavesTheOldFileAndNoSibling()
    {
        string path = Path.Combine(root, "index.json");
        File.WriteAllText(path, "old");
        Assert.Throws<InvalidOperationException>(() => AtomicFile.Write(path, stream =>
        {
            stream.Write("new, half"u8);
            throw new InvalidOperationException("disk gone");
        }));
        Assert.Equal("old", File.ReadAllText(path));
        NoTemporaries(root);
    }

    [Fact]
    public void ResultStoresOpenedTogetherShareOneSettingsFile()
    {
        var settings = new Dictionary<string, string> { ["protocol"] = "linear-probe", ["seeds"] = "3" };
        Parallel.For(0, 8, i => Assert.NotNull(new ResultStore(root, settings)));
        Assert.Contains("linear-probe", File.ReadAllText(Path.Combine(root, "settings.json")));
        _ = new ResultStore(root, settings);  // and a later one agrees with what landed
        NoTemporaries(root);
    }

    [Fact]
    public void AFailedNpzWriteKeepsTheOldArchive()
    {
        string path = Path.Combine(root, "arrays.npz");
        using (var images = arange(6, dtype: ScalarType.Byte)) Npz.Write(path, new Dictionary<string, Tensor> { ["images"] = images });
        using (var complex = zeros(2, dtype: ScalarType.ComplexFloat32))
            Assert.Throws<ArgumentException>(() => Npz.Write(path, new Dictionary<string, Tensor> { ["images"] = complex }));
        using (var npz = Npz.Open(path))
        using (var read = npz.Read("images"))
            Assert.Equal(15, read.sum().item<long>());
        NoTemporaries(root);
    }

    [Fact]
    public void ABuiltCacheHoldsNoTemporaries()
    {
        using var volumes = new TensorCorpus("ct", arange(5 * 8, dtype: ScalarType.Float32).view(5, 1, 2, 4), labels: arange(5), organ: "lung", modality: "ct");
        using var cache = CachedCorpus.Open(volumes, null, root, samplesPerShard: 2);
        Assert.Equal(5, cache.Count);
        Assert.True(File.Exists(Path.Combine(cache.Folder, "index.json")));
        NoTemporaries(root);
    }
}
