using System.Text.Json;
using System.Text.Json.Serialization;
using Medformer.Runtime;

namespace Medformer.Eval.Protocols;

/// <summary>
/// A protocol's results on disk, so an interrupted run resumes with the cells it has: settings.json (the protocol,
/// data and trainer settings the results belong to) and cells.jsonl, one <see cref="CellResult"/> per line,
/// appended and flushed to disk as each cell finishes. A torn last line (a crash mid-write) is dropped on reading.
/// A rerun with other settings is refused; one with more seeds, fractions or initialisations adds cells.
/// </summary>
public sealed class ResultStore
{
    // Named literals: an undefined score is NaN, a Hausdorff distance to a missed structure +∞.
    public static JsonSerializerOptions Json { get; } = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = false, NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    readonly Dictionary<CellKey, CellResult> results = [];

    public string Directory { get; }
    public string CellsPath => Path.Combine(Directory, "cells.jsonl");
    public string SettingsPath => Path.Combine(Directory, "settings.json");

    /// <summary>Opens (or starts) the store in <paramref name="directory"/> for results made with <paramref name="settings"/>.</summary>
    public ResultStore(string directory, IReadOnlyDictionary<string, string> settings)
    {
        Directory = directory;
        System.IO.Directory.CreateDirectory(directory);
        var wanted = new SortedDictionary<string, string>(settings.ToDictionary(), StringComparer.Ordinal);
        if (File.Exists(SettingsPath))
        {
            var had = JsonSerializer.Deserialize<SortedDictionary<string, string>>(File.ReadAllText(SettingsPath))
                ?? throw new InvalidDataException($"{SettingsPath}: empty");
            var differ = wanted.Keys.Union(had.Keys).Where(k => wanted.GetValueOrDefault(k) != had.GetValueOrDefault(k)).ToList();
            if (differ.Count > 0)
            {
                var changes = differ.Select(k => $"{k}: {had.GetValueOrDefault(k) ?? "unset"} there, {wanted.GetValueOrDefault(k) ?? "unset"} now");
                throw new ArgumentException($"--out {directory} holds results made with other settings ({string.Join(", ", changes)}); use another --out");
            }
        }
        else
        {
            // A unique sibling, fsynced, renamed: two runs starting in one folder never write into the same temporary.
            AtomicFile.WriteAllText(SettingsPath, JsonSerializer.Serialize(wanted, new JsonSerializerOptions { WriteIndented = true }));
        }
        if (!File.Exists(CellsPath)) return;
        // A torn last line (a crash mid-write) is cut off: that cell runs again.
        var text = File.ReadAllText(CellsPath);
        if (text.Length > 0 && !text.EndsWith('\n'))
        {
            text = text[..(text.LastIndexOf('\n') + 1)];
            File.WriteAllText(CellsPath, text);
        }
        var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        for (int i = 0; i < lines.Length; i++)
        {
            try
            {
                var result = JsonSerializer.Deserialize<CellResult>(lines[i], Json) ?? throw new JsonException("null");
                results[result.Key] = result;
            }
            catch (JsonException e)
            {
                throw new InvalidDataException($"{CellsPath}: line {i + 1} is not a cell result: {e.Message}", e);
            }
        }
    }

    public bool TryGet(CellKey key, out CellResult result) => results.TryGetValue(key, out result!);

    /// <summary>Appends one finished cell and forces it to disk.</summary>
    public void Add(CellResult result)
    {
        results[result.Key] = result;
        using var stream = new FileStream(CellsPath, FileMode.Append, FileAccess.Write, FileShare.Read);
        var bytes = System.Text.Encoding.UTF8.GetBytes(JsonSerializer.Serialize(result, Json) + "\n");
        stream.Write(bytes);
        stream.Flush(flushToDisk: true);
    }
}
