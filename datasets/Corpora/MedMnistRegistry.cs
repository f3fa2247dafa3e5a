using System.Text.Json;
using System.Text.RegularExpressions;
using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// MedMNIST's 18 subsets (12 2D, 6 3D), as MedMNIST's info.py publishes them (v3.0.2: URLs and MD5s per size),
/// from the embedded medmnist.json. <c>MEDFORMER_MEDMNIST_REGISTRY</c> names a JSON file of the same schema that
/// replaces it (a private mirror with other files, or a test serving its own files).
/// </summary>
public sealed partial class MedMnistRegistry
{
    public const string OverrideVariable = "MEDFORMER_MEDMNIST_REGISTRY";

    /// <summary>A mirror's folder URL, replacing the published host and path (see <see cref="MedMnistSubset.DownloadUrl"/>).</summary>
    public const string MirrorVariable = "MEDFORMER_MEDMNIST_URL";
    const string ResourceName = "Medformer.Datasets.Corpora.medmnist.json";

    static readonly Lazy<MedMnistRegistry> embedded = new(LoadEmbedded);

    readonly Dictionary<string, MedMnistSubset> byName;

    /// <summary>Where the registry came from (the resource or the file), for messages.</summary>
    public string Source { get; }

    public IReadOnlyList<MedMnistSubset> Subsets { get; }

    public IEnumerable<string> Names => Subsets.Select(s => s.Name);

    MedMnistRegistry(string source, IReadOnlyList<MedMnistSubset> subsets)
    {
        Source = source;
        Subsets = subsets;
        byName = subsets.ToDictionary(s => s.Name, StringComparer.Ordinal);
    }

    /// <summary>The published registry, embedded in this assembly.</summary>
    public static MedMnistRegistry Embedded => embedded.Value;

    /// <summary>The file <c>MEDFORMER_MEDMNIST_REGISTRY</c> names, if set, else <see cref="Embedded"/>.</summary>
    public static MedMnistRegistry Default => Environment.GetEnvironmentVariable(OverrideVariable) is { Length: > 0 } path
        ? Load(path)
        : Embedded;

    public static MedMnistRegistry Load(string path)
    {
        string text;
        try
        {
            text = File.ReadAllText(path);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file (a MedMNIST registry)", path);
        }
        return Parse(text, path);
    }

    public bool TryGet(string name, out MedMnistSubset subset) => byName.TryGetValue(name.ToLowerInvariant(), out subset!);

    /// <summary>The subset by name; an <see cref="ArgumentException"/> lists the names there are.</summary>
    public MedMnistSubset Get(string name) => TryGet(name, out var subset)
        ? subset
        : throw new ArgumentException($"no MedMNIST subset '{name}': the subsets are {string.Join(", ", Names)}");

    /// <summary>The subset and size a file name says (pathmnist.npz, pathmnist_64.npz), or null.</summary>
    public (MedMnistSubset Subset, int Size)? ForFile(string path)
    {
        var match = FileNamePattern().Match(System.IO.Path.GetFileName(path));
        if (!match.Success || !TryGet(match.Groups[1].Value, out var subset)) return null;
        return (subset, match.Groups[2].Success ? int.Parse(match.Groups[2].Value) : 28);
    }

    [GeneratedRegex(@"^([a-z0-9]+?)(?:_(\d{2,4}))?\.npz$", RegexOptions.IgnoreCase)]
    private static partial Regex FileNamePattern();

    static MedMnistRegistry LoadEmbedded()
    {
        using var stream = typeof(MedMnistRegistry).Assembly.GetManifestResourceStream(ResourceName)
            ?? throw new InvalidOperationException($"the assembly lacks its resource {ResourceName}");
        using var reader = new StreamReader(stream);
        return Parse(reader.ReadToEnd(), "medmnist.json (embedded)");
    }

    /// <summary>Parses and validates a registry; every fault names <paramref name="source"/> and the subset.</summary>
    public static MedMnistRegistry Parse(string json, string source)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not valid JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("subsets", out var list) || list.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{source}: expected an object with a \"subsets\" array");
            var subsets = new List<MedMnistSubset>();
            foreach (var item in list.EnumerateArray())
            {
                var subset = ParseSubset(item, source, subsets.Count);
                if (subsets.Any(s => s.Name == subset.Name)) throw new InvalidDataException($"{source}: subset '{subset.Name}' appears twice");
                subsets.Add(subset);
            }
            return new MedMnistRegistry(source, subsets);
        }
    }

    static MedMnistSubset ParseSubset(JsonElement item, string source, int index)
    {
        string where = $"{source}: subset {index}";
        if (item.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: not an object");
        string name = Text(item, "name", where);
        if (!NamePattern().IsMatch(name)) throw new InvalidDataException($"{where}: name '{name}' must be lower-case letters and digits");
        where = $"{source}: subset '{name}'";
        var dimensionality = Dimensionality.Parse(OneOf(item, "dimensionality", ["2d", "3d"], where));
        string organ = OneOf(item, "organ", Vocabulary.Organs, where);
        string modality = OneOf(item, "modality", Vocabulary.Modalities, where);
        string task = OneOf(item, "task", Vocabulary.Tasks, where);
        int channels = (int)Integer(item, "channels", where, 1, 4);
        if (dimensionality.IsVolume && channels != 1) throw new InvalidDataException($"{where}: a 3D subset has 1 channel, not {channels}");
        var labels = Property(item, "labels", JsonValueKind.Array, where).EnumerateArray()
            .Select(l => l.ValueKind == JsonValueKind.String ? l.GetString()! : throw new InvalidDataException($"{where}: 'labels' must hold strings"))
            .ToList();
        if (labels.Count == 0) throw new InvalidDataException($"{where}: 'labels' is empty");
        var splitsElement = Property(item, "splits", JsonValueKind.Object, where);
        var splits = new Dictionary<string, long>();
        foreach (string split in new[] { "train", "val", "test" })
            splits[split] = Integer(splitsElement, split, $"{where}: splits", 0, long.MaxValue);
        var files = new Dictionary<int, MedMnistFile>();
        foreach (var file in Property(item, "files", JsonValueKind.Object, where).EnumerateObject())
        {
            string fileWhere = $"{where}: files[\"{file.Name}\"]";
            if (!int.TryParse(file.Name, out int size) || size is < 8 or > 4096)
                throw new InvalidDataException($"{fileWhere}: the key must be an image size (28, 64, 128, 224)");
            if (file.Value.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{fileWhere}: not an object");
            string url = Text(file.Value, "url", fileWhere);
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
                throw new InvalidDataException($"{fileWhere}: url '{url}' is not an http(s) URL");
            string md5 = Text(file.Value, "md5", fileWhere).ToLowerInvariant();
            if (!Md5Pattern().IsMatch(md5)) throw new InvalidDataException($"{fileWhere}: md5 '{md5}' is not 32 hex digits");
            long? bytes = file.Value.TryGetProperty("bytes", out var b) && b.ValueKind != JsonValueKind.Null
                ? Integer(file.Value, "bytes", fileWhere, 1, long.MaxValue)
                : null;
            files[size] = new MedMnistFile(size, url, md5, bytes);
        }
        return new MedMnistSubset(name, dimensionality, organ, modality,
            item.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.String ? content.GetString()! : "",
            channels, task, labels, splits,
            item.TryGetProperty("license", out var license) && license.ValueKind == JsonValueKind.String ? license.GetString()! : "",
            files);
    }

    static JsonElement Property(JsonElement item, string key, JsonValueKind kind, string where) =>
        item.TryGetProperty(key, out var value) && value.ValueKind == kind
            ? value
            : throw new InvalidDataException($"{where}: '{key}' is missing or not " +
                $"{(kind == JsonValueKind.Array ? "an array" : kind == JsonValueKind.Object ? "an object" : kind.ToString().ToLowerInvariant())}");

    static string Text(JsonElement item, string key, string where) => Property(item, key, JsonValueKind.String, where).GetString()!;

    static string OneOf(JsonElement item, string key, IReadOnlyList<string> allowed, string where)
    {
        string value = Text(item, key, where);
        return allowed.Contains(value) ? value : throw new InvalidDataException($"{where}: {key} '{value}' is not one of {string.Join(", ", allowed)}");
    }

    static long Integer(JsonElement item, string key, string where, long min, long max)
    {
        var value = Property(item, key, JsonValueKind.Number, where);
        return value.TryGetInt64(out long n) && n >= min && n <= max
            ? n
            : throw new InvalidDataException($"{where}: '{key}' must be an integer from {min} to {max}, not {value.GetRawText()}");
    }

    [GeneratedRegex("^[a-z0-9]+$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[0-9a-f]{32}$")]
    private static partial Regex Md5Pattern();
}
