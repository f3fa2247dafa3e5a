using System.Text.Json;

namespace Medformer.Bench;

/// <summary>
/// The finished cells of a resumable experiment, one JSON object a line: appended as each cell finishes, read back on
/// the next run so that it skips them.
/// </summary>
internal static class JsonLines
{
    /// <summary>The file's objects, in order (none when it does not exist yet); blank lines are skipped.</summary>
    public static List<T> Read<T>(string file) =>
        File.Exists(file) ? [.. File.ReadAllLines(file).Where(l => l.Length > 0).Select(l => JsonSerializer.Deserialize<T>(l)!)] : [];

    public static void Append<T>(string file, T item) => File.AppendAllText(file, JsonSerializer.Serialize(item) + "\n");
}
