using System.Security.Cryptography;
using System.Text.Json;

namespace Medformer.Tracking.Hub;

/// <summary>
/// What a cached model folder held when it was verified and unpacked: per file its size, modification time and
/// SHA-256, in <see cref="FileName"/> inside the folder. Size and time are checked on every use (cheap), the
/// digests on demand (<c>medformer download NAME --verify</c>), so a cache changed after the download is not used
/// as if it were still the verified checkpoint.
/// </summary>
public static class CacheDigests
{
    public const string FileName = ".digests.json";

    sealed record Entry(long Size, long MtimeTicks, string Sha256);

    /// <summary>Records every file of <paramref name="folder"/> (but the record itself).</summary>
    public static void Record(string folder)
    {
        var entries = new SortedDictionary<string, Entry>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFiles(folder))
        {
            string name = Path.GetFileName(path);
            if (name == FileName) continue;
            entries[name] = new Entry(new FileInfo(path).Length, File.GetLastWriteTimeUtc(path).Ticks, Hash(path));
        }
        File.WriteAllText(Path.Combine(folder, FileName), JsonSerializer.Serialize(entries));
    }

    /// <summary>
    /// Null when the folder is as recorded, else what differs (one line). <paramref name="full"/> compares the
    /// SHA-256 of every file; otherwise only sizes and times.
    /// </summary>
    public static string? Check(string folder, bool full)
    {
        string record = Path.Combine(folder, FileName);
        if (!File.Exists(record)) return $"{folder}: has no {FileName} (a cache entry of an older medformer, or not made by it)";
        SortedDictionary<string, Entry>? entries;
        try
        {
            entries = JsonSerializer.Deserialize<SortedDictionary<string, Entry>>(File.ReadAllText(record));
        }
        catch (JsonException)
        {
            entries = null;
        }
        if (entries == null || entries.Count == 0) return $"{record}: not a record of the folder's files";
        foreach (var (name, entry) in entries)
        {
            string path = Path.Combine(folder, name);
            if (!HubManifest.IsSafeName(name) || !File.Exists(path)) return $"{path}: recorded but missing";
            long size = new FileInfo(path).Length;
            if (size != entry.Size) return $"{path}: {size} bytes, {entry.Size} when it was verified";
            if (full)
            {
                if (Hash(path) is var actual && actual != entry.Sha256) return $"{path}: SHA-256 {actual}, {entry.Sha256} when it was verified";
            }
            else if (File.GetLastWriteTimeUtc(path).Ticks != entry.MtimeTicks)
                return $"{path}: modified at {File.GetLastWriteTimeUtc(path):u}, after it was verified";
        }
        foreach (string path in Directory.EnumerateFiles(folder))
            if (!entries.ContainsKey(Path.GetFileName(path)) && Path.GetFileName(path) != FileName) return $"{path}: not part of the verified checkpoint";
        return null;
    }

    static string Hash(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(stream));
    }
}
