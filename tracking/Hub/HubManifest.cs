using System.Text.Json;
using System.Text.RegularExpressions;
using Medformer.Runtime.Net;

namespace Medformer.Tracking.Hub;

/// <summary>One checkpoint the hub offers.</summary>
/// <param name="Url">A packed model folder (.tar, .tar.gz / .tgz or .zip holding config.json and model.safetensors)
/// or a bare .safetensors file (then <paramref name="Config"/> gives its config.json).</param>
/// <param name="Size">The file's length in bytes, when known.</param>
/// <param name="Sha256">The file's SHA-256, lower-case hex; null only for a bare URL given on the command line.</param>
/// <param name="Config">A preset name (a JSON string) or an inline config (a JSON object); null when the archive holds config.json.</param>
public sealed record HubEntry(string Name, Uri Url, long? Size, string? Sha256, JsonElement? Config, string Description)
{
    /// <summary>The name the downloaded file keeps in the cache: the URL's last path segment.</summary>
    public string FileName => Path.GetFileName(Url.AbsolutePath) is { Length: > 0 } name && HubManifest.IsSafeName(name) ? name : "download";

    /// <summary>An entry for a URL given directly: named after its file, verified only if a SHA-256 is given.</summary>
    public static HubEntry ForUrl(Uri url, string? sha256)
    {
        if (url.Scheme is not ("http" or "https")) throw new ArgumentException($"{url}: only http and https URLs can be downloaded");
        string file = Path.GetFileName(url.AbsolutePath);
        string name = file;
        foreach (string suffix in new[] { ".tar.gz", ".tgz", ".tar", ".zip", ".safetensors" })
            if (name.EndsWith(suffix, StringComparison.OrdinalIgnoreCase)) name = name[..^suffix.Length];
        name = Regex.Replace(name, "[^A-Za-z0-9._-]", "_").Trim('.');
        return new HubEntry(name.Length > 0 ? name : "download", url, null, sha256 == null ? null : Checksum.Sha256(sha256).Hex, null, "");
    }
}

/// <summary>
/// The list of checkpoints <c>medformer download NAME</c> knows: JSON, <c>{"format": 1, "checkpoints": [{"name",
/// "url", "size", "sha256", "config", "description"}]}</c>. The built-in one is embedded; <c>--manifest FILE|URL</c>
/// or <c>MEDFORMER_HUB</c> names another, fetched over https or pinned by its SHA-256 (see LoadAsync).
/// </summary>
public sealed partial class HubManifest
{
    public const string Variable = "MEDFORMER_HUB";

    /// <summary>The manifest's own SHA-256, pinning it (the default of <c>--manifest-sha256</c>).</summary>
    public const string PinVariable = "MEDFORMER_HUB_SHA256";

    /// <summary>A manifest is a list of names and URLs: one larger than this is refused before it is read into memory.</summary>
    public const long MaxBytes = 16 << 20;
    const string ResourceName = "Medformer.Tracking.Hub.hub.json";

    /// <summary>Where it came from (the built-in resource, a file or a URL), for messages.</summary>
    public string Source { get; }

    public IReadOnlyList<HubEntry> Checkpoints { get; }

    HubManifest(string source, IReadOnlyList<HubEntry> checkpoints)
    {
        Source = source;
        Checkpoints = checkpoints;
    }

    /// <summary>The built-in manifest. No Medformer weights are published yet, so it lists none.</summary>
    public static HubManifest Embedded
    {
        get
        {
            using var stream = typeof(HubManifest).Assembly.GetManifestResourceStream(ResourceName)
                ?? throw new InvalidOperationException($"the assembly lacks its resource {ResourceName}");
            using var reader = new StreamReader(stream);
            return Parse(reader.ReadToEnd(), "the built-in hub manifest");
        }
    }

    /// <summary>
    /// <paramref name="source"/> (a file or an http(s) URL), else the one <c>MEDFORMER_HUB</c> names, else the built-in
    /// one. A manifest at a URL is fetched afresh each time (it is small and may change). Its SHA-256 values are what
    /// every checkpoint is verified against, so it must come over https, or be pinned by its own SHA-256
    /// (<paramref name="sha256"/>, else <c>MEDFORMER_HUB_SHA256</c>): plain http, loopback included, is refused
    /// without a pin, since anyone on the path could swap both the manifest and the checkpoints. A pin given for a
    /// file or an https URL is checked too.
    /// </summary>
    public static async Task<HubManifest> LoadAsync(string? source, string? sha256 = null, DownloadOptions? options = null,
        CancellationToken cancellation = default)
    {
        bool fromVariable = source == null;
        source ??= Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } variable ? variable : null;
        bool pinFromVariable = sha256 == null;
        sha256 ??= Environment.GetEnvironmentVariable(PinVariable) is { Length: > 0 } pinned ? pinned : null;
        if (source == null) return Embedded;
        string where = fromVariable ? $"{source} (${Variable})" : source;
        Checksum? pin;
        try
        {
            pin = sha256 == null ? null : Checksum.Sha256(sha256);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException($"{where}: the manifest's pin ({(pinFromVariable ? "$" + PinVariable : "--manifest-sha256")}): {e.Message}", e);
        }
        if (Uri.TryCreate(source, UriKind.Absolute, out var url) && url.Scheme is "http" or "https")
        {
            if (url.Scheme == "http" && pin == null)
                throw new InvalidDataException($"{where}: a hub manifest over plain http is not trusted (its SHA-256 values could be forged on the way); use " +
                    $"https, or pin it with --manifest-sha256 HEX or ${PinVariable}");
            string temporary = Path.Combine(Path.GetTempPath(), $"medformer-hub-{Guid.NewGuid():N}.json");
            try
            {
                await Download.FetchAsync(url, temporary, pin, options: (options ?? DownloadOptions.Default) with { Progress = null },
                    cancellation: cancellation);
                CheckSize(temporary, where);
                return Parse(await File.ReadAllTextAsync(temporary, cancellation), source);
            }
            finally
            {
                File.Delete(temporary);
            }
        }
        if (!File.Exists(source)) throw new FileNotFoundException($"{where}: no such hub manifest (a file, or an http(s) URL)", source);
        CheckSize(source, where);
        byte[] bytes = await File.ReadAllBytesAsync(source, cancellation);
        string actual = Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(bytes));
        if (pin != null && actual != pin.Hex)
            throw new DownloadException($"{where}: SHA-256 mismatch: expected {pin.Hex}, got {actual}; the manifest was not used");
        return Parse(System.Text.Encoding.UTF8.GetString(bytes), source);
    }

    static void CheckSize(string path, string where)
    {
        if (new FileInfo(path).Length is var length && length > MaxBytes)
            throw new InvalidDataException($"{where}: a hub manifest of {length} bytes, over the limit of {MaxBytes}; refused");
    }

    public static HubManifest Parse(string json, string source)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{source}: not JSON: {e.Message}", e);
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("checkpoints", out var list) || list.ValueKind != JsonValueKind.Array)
                throw new InvalidDataException($"{source}: a hub manifest is an object with a \"checkpoints\" list");
            if (root.TryGetProperty("format", out var format) && (!format.TryGetInt32(out int version) || version != 1))
                throw new InvalidDataException($"{source}: manifest format {format} is not 1");
            var entries = new List<HubEntry>();
            int index = 0;
            foreach (var item in list.EnumerateArray())
            {
                entries.Add(ParseEntry(item, $"{source}: checkpoints[{index}]"));
                index++;
            }
            var duplicate = entries.GroupBy(e => e.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (duplicate != null) throw new InvalidDataException($"{source}: the name '{duplicate.Key}' appears {duplicate.Count()} times");
            return new HubManifest(source, entries);
        }
    }

    static HubEntry ParseEntry(JsonElement item, string where)
    {
        if (item.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{where}: not an object");
        var known = new HashSet<string> { "name", "url", "size", "sha256", "config", "description" };
        foreach (var property in item.EnumerateObject())
            if (!known.Contains(property.Name))
                throw new InvalidDataException($"{where}: unknown key '{property.Name}' (the keys are {string.Join(", ", known)})");
        string Text(string key) =>
            item.TryGetProperty(key, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString()! :
                throw new InvalidDataException($"{where}: '{key}' must be a string");
        string name = Text("name");
        if (!IsSafeName(name)) throw new InvalidDataException($"{where}: name '{name}' must be letters, digits, '.', '_' and '-'");
        where = $"{where} ('{name}')";
        if (!Uri.TryCreate(Text("url"), UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            throw new InvalidDataException($"{where}: url '{Text("url")}' is not an http(s) URL");
        string sha256 = Text("sha256").ToLowerInvariant();
        if (sha256.Length != 64 || !sha256.All(Uri.IsHexDigit)) throw new InvalidDataException($"{where}: sha256 '{sha256}' is not 64 hex digits");
        long? size = null;
        if (item.TryGetProperty("size", out var sizeValue))
            size = sizeValue.TryGetInt64(out long bytes) && bytes > 0 ? bytes :
                throw new InvalidDataException($"{where}: size {sizeValue} is not a positive integer");
        JsonElement? config = null;
        if (item.TryGetProperty("config", out var configValue))
            config = configValue.ValueKind is JsonValueKind.String or JsonValueKind.Object
                ? configValue.Clone()
                : throw new InvalidDataException($"{where}: config must be a preset name or a config object");
        string description = item.TryGetProperty("description", out var text) && text.ValueKind == JsonValueKind.String ? text.GetString()! : "";
        return new HubEntry(name, url, size, sha256, config, description);
    }

    public bool TryGet(string name, out HubEntry entry)
    {
        entry = Checkpoints.FirstOrDefault(e => e.Name == name)!;
        return entry != null;
    }

    /// <summary>The entry whose URL is <paramref name="url"/>, so a URL the manifest knows is verified too.</summary>
    public HubEntry? ForUrl(Uri url) => Checkpoints.FirstOrDefault(e => e.Url == url);

    internal static bool IsSafeName(string name) => name.Length is > 0 and <= 128 && SafeName().IsMatch(name) && name is not ("." or "..");

    [GeneratedRegex("^[A-Za-z0-9._-]+$")]
    private static partial Regex SafeName();
}
