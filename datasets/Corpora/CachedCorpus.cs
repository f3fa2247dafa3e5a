using System.Globalization;
using System.Reflection;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Medformer.Datasets.Transforms;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// A corpus preprocessed once and kept on disk (MONAI's PersistentDataset): every sample of
/// <c>source</c> goes through the deterministic <c>preprocess</c> pipeline (windowing, resampling, cropping) and
/// lands in safetensors shards under <c>cacheRoot</c>; later runs memory-map the shards, so a sample costs a view,
/// not a decode. Random augmentation belongs after the cache, in the loader's pipeline.
/// <para>
/// The cache's folder is named by a hash of the corpus's name and size and the pipeline's description (records
/// print their parameters), so a changed pipeline builds a new cache instead of reading a stale one. Building
/// resumes: each finished shard is kept, and the folder appears whole (renamed into place) only when every shard
/// is written. Bad samples are left out and listed in <c>index.json</c>, unless strict.
/// </para>
/// </summary>
public sealed class CachedCorpus : ICorpus, IDisposable
{
    const int FormatVersion = 1;
    static readonly JsonSerializerOptions Json = new() { WriteIndented = true };

    readonly SafetensorsFile[] shards;
    readonly (int Shard, int Local)[] entries;
    readonly SampleMeta[] metas;

    CachedCorpus(string name, string folder, SafetensorsFile[] shards, (int, int)[] entries, SampleMeta[] metas, IReadOnlyList<string> skipped)
    {
        Name = name;
        Folder = folder;
        this.shards = shards;
        this.entries = entries;
        this.metas = metas;
        Skipped = skipped;
    }

    public string Name { get; }

    /// <summary>Where the shards live.</summary>
    public string Folder { get; }

    public long Count => entries.Length;

    /// <summary>The samples left out when the cache was built (index and reason).</summary>
    public IReadOnlyList<string> Skipped { get; }

    /// <summary>A view of the cached sample (no copy); the caller owns the view, which stays valid after this corpus is disposed.</summary>
    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"corpus '{Name}' has {Count} samples");
        var (shard, local) = entries[index];
        var file = shards[shard];
        var image = file.GetTensor($"{local}.image");
        var target = file.Contains($"{local}.target") ? file.GetTensor($"{local}.target") : null;
        return new Sample(image, metas[index], target);
    }

    /// <summary>
    /// Opens the cache of <paramref name="source"/> under <paramref name="preprocess"/>, building it first if it is
    /// missing. <paramref name="progress"/> hears (samples done, total) while building.
    /// </summary>
    public static CachedCorpus Open(ICorpus source, ITransform? preprocess, string cacheRoot, int samplesPerShard = 64,
        bool strict = false, Action<long, long>? progress = null)
    {
        if (samplesPerShard < 1) throw new ArgumentException($"samples per shard {samplesPerShard} must be at least 1");
        string description =
            $"medformer-cache v{FormatVersion}\ncorpus {source.Name} ({source.Count} samples)\npreprocess {Describe(preprocess)}\nshard {samplesPerShard}";
        string key = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(description)))[..16];
        string folder = Path.Combine(cacheRoot, $"{Sanitize(source.Name)}-{key}");
        if (!File.Exists(Path.Combine(folder, "index.json")))
        {
            // Several jobs on a shared cache may ask for the same corpus at once: one builds, the others wait and
            // then read what it built. The lock is an advisory flock, released by the kernel if its holder dies.
            using var buildLock = LockForBuilding(folder + ".lock");
            if (!File.Exists(Path.Combine(folder, "index.json")))
                Build(source, preprocess, folder, description, samplesPerShard, strict, progress);
        }
        return Load(source.Name, folder);
    }

    static FileStream LockForBuilding(string path)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        bool told = false;
        while (true)
        {
            try
            {
                // .NET takes FileShare.None on Unix as flock(LOCK_EX | LOCK_NB) on the open file.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (File.Exists(path))
            {
                if (!told) Console.Error.WriteLine($"medformer: waiting for another process building the cache {Path.GetFileNameWithoutExtension(path)}");
                told = true;
                Thread.Sleep(200);
            }
        }
    }

    sealed record IndexFile(string Description, int Shards, int[][] Entries, SampleMeta[] Metas, string[] Skipped);

    static void Build(ICorpus source, ITransform? preprocess, string folder, string description, int samplesPerShard, bool strict, Action<long, long>? progress)
    {
        // Finished shards survive a killed build here; the cache appears under its real name only when whole.
        string staging = folder + ".building";
        Directory.CreateDirectory(staging);
        var rng = new Random(0);  // preprocessing is deterministic; a transform that draws anyway draws the same each build
        var entries = new List<int[]>();
        var metas = new List<SampleMeta>();
        var skipped = new List<string>();
        int shardCount = (int)((source.Count + samplesPerShard - 1) / samplesPerShard);
        for (int shard = 0; shard < shardCount; shard++)
        {
            string path = Path.Combine(staging, $"shard-{shard:D5}.safetensors");
            string listing = path + ".json";
            if (!(File.Exists(path) && File.Exists(listing)))
                WriteShard(source, preprocess, rng, shard, samplesPerShard, path, listing, strict);
            var written = JsonSerializer.Deserialize<ShardListing>(File.ReadAllText(listing))!;
            foreach (var (local, meta) in written.Metas.Index()) entries.Add([shard, local]);
            metas.AddRange(written.Metas);
            skipped.AddRange(written.Skipped);
            progress?.Invoke(Math.Min(source.Count, (shard + 1L) * samplesPerShard), source.Count);
        }
        var index = new IndexFile(description, shardCount, [.. entries], [.. metas], [.. skipped]);
        // index.json marks a finished cache: it must never exist half written, nor a listing beside a torn shard.
        AtomicFile.WriteAllText(Path.Combine(staging, "index.json"), JsonSerializer.Serialize(index, Json));
        foreach (string listing in Directory.EnumerateFiles(staging, "*.safetensors.json")) File.Delete(listing);
        if (Directory.Exists(folder)) Directory.Delete(folder, recursive: true);
        Directory.Move(staging, folder);
        AtomicDirectory.FsyncDirectory(Path.GetDirectoryName(Path.GetFullPath(folder))!);
    }

    sealed record ShardListing(SampleMeta[] Metas, string[] Skipped);

    static void WriteShard(ICorpus source, ITransform? preprocess, Random rng, int shard, int samplesPerShard, string path, string listing, bool strict)
    {
        using var scope = NewDisposeScope();
        var tensors = new Dictionary<string, Tensor>();
        var metas = new List<SampleMeta>();
        var skipped = new List<string>();
        long start = (long)shard * samplesPerShard, end = Math.Min(source.Count, start + samplesPerShard);
        for (long i = start; i < end; i++)
        {
            try
            {
                var sample = source.Get(i);
                if (preprocess is not null) sample = preprocess.Apply(sample, rng);
                int local = metas.Count;
                tensors[$"{local}.image"] = sample.Image.contiguous();
                if (sample.Target is not null) tensors[$"{local}.target"] = sample.Target.contiguous();
                metas.Add(sample.Meta);
            }
            catch (Exception e) when (!strict && e is InvalidDataException or IOException or NotSupportedException)
            {
                skipped.Add($"{source.Name}[{i}]: {e.Message}");
            }
        }
        Safetensors.Save(tensors, path, new Dictionary<string, string> { ["format"] = "medformer-cache", ["corpus"] = source.Name });
        AtomicFile.WriteAllText(listing, JsonSerializer.Serialize(new ShardListing([.. metas], [.. skipped])));
    }

    static CachedCorpus Load(string name, string folder)
    {
        string indexPath = Path.Combine(folder, "index.json");
        IndexFile index;
        try
        {
            index = JsonSerializer.Deserialize<IndexFile>(File.ReadAllText(indexPath))
                ?? throw new InvalidDataException($"{indexPath}: empty index");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{indexPath}: not a cache index ({e.Message}); delete {folder} to rebuild it", e);
        }
        var shards = new SafetensorsFile[index.Shards];
        try
        {
            for (int s = 0; s < shards.Length; s++)
                shards[s] = SafetensorsFile.Open(Path.Combine(folder, $"shard-{s:D5}.safetensors"));
        }
        catch (SafetensorsException e)
        {
            foreach (var file in shards) file?.Dispose();
            throw new InvalidDataException($"{folder}: a damaged cache shard ({e.Message}); delete the folder to rebuild it", e);
        }
        if (index.Entries.Length != index.Metas.Length || index.Entries.Any(e => e.Length != 2 || e[0] < 0 || e[0] >= shards.Length))
            throw new InvalidDataException($"{indexPath}: entries and metas disagree; delete {folder} to rebuild it");
        return new CachedCorpus(name, folder, shards, [.. index.Entries.Select(e => (e[0], e[1]))], index.Metas, index.Skipped);
    }

    /// <summary>
    /// A pipeline's parameters as text, arrays and nested transforms included (a record's own ToString prints an
    /// array as "System.Double[]", so Spacing([1.5]) and Spacing([2.0]) would share a cache).
    /// </summary>
    internal static string Describe(object? value) => value switch
    {
        null => "none",
        string text => text,
        IFormattable number => number.ToString(null, CultureInfo.InvariantCulture),
        System.Collections.IEnumerable items => "[" + string.Join(", ", items.Cast<object?>().Select(Describe)) + "]",
        _ when value.GetType().IsEnum || value.GetType().IsPrimitive => value.ToString()!,
        _ => value.GetType().Name + "(" + string.Join(", ", value.GetType().GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Where(p => p.GetIndexParameters().Length == 0 && p.Name != "EqualityContract")
            .Select(p => $"{p.Name}={Describe(p.GetValue(value))}")) + ")",
    };

    static string Sanitize(string name) => string.Concat(name.Select(c => char.IsLetterOrDigit(c) || c is '-' or '_' ? c : '_'));

    public void Dispose()
    {
        foreach (var shard in shards) shard.Dispose();
    }
}
