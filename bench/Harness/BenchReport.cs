using System.Text.Json;

namespace Medformer.Bench;

/// <summary>One line of a benchmark's table: a figure for us and for the PyTorch reference.</summary>
public sealed record BenchRow(string Metric, double Ours, double? Reference, string Unit, bool HigherIsBetter = true)
{
    /// <summary>Our speed over the reference's: above 1 is faster.</summary>
    public double? Ratio => Reference is { } r && r > 0 && Ours > 0 ? (HigherIsBetter ? Ours / r : r / Ours) : null;
}

/// <summary>A benchmark's result: the table a person reads and the JSON line a script reads.</summary>
public sealed class BenchReport(string name)
{
    readonly List<BenchRow> rows = [];
    readonly Dictionary<string, object> extra = [];
    BenchRow? headline;

    public string Name { get; } = name;

    public BenchRow Add(BenchRow row)
    {
        rows.Add(row);
        return row;
    }

    /// <summary>The row whose ours/reference/ratio head the JSON line.</summary>
    public void Headline(BenchRow row) => headline = row;

    public void Extra(string key, object value) => extra[key] = value;

    public void Print(TextWriter output)
    {
        int width = Math.Max(28, rows.Max(r => r.Metric.Length) + 2);
        output.WriteLine($"{"metric".PadRight(width)}{"ours",14}{"pytorch 1.13",14}{"ratio",9}  unit");
        foreach (var row in rows)
        {
            string reference = row.Reference is { } r ? Format(r) : "-";
            string ratio = row.Ratio is { } q ? $"{q:F2}x" : "";
            output.WriteLine($"{row.Metric.PadRight(width)}{Format(row.Ours),14}{reference,14}{ratio,9}  {row.Unit}");
        }
        foreach (var (key, value) in extra) output.WriteLine($"{key}: {value}");
        var head = headline ?? rows[0];
        var json = new Dictionary<string, object?>
        {
            ["benchmark"] = Name,
            ["metric"] = head.Metric,
            ["ours"] = head.Ours,
            ["reference"] = head.Reference,
            ["ratio"] = head.Ratio,
            ["unit"] = head.Unit,
        };
        foreach (var row in rows) json[Key(row.Metric)] = new { ours = row.Ours, reference = row.Reference, ratio = row.Ratio, unit = row.Unit };
        foreach (var (key, value) in extra) json[key] = value;
        output.WriteLine(JsonSerializer.Serialize(json));
    }

    static string Format(double value) => Math.Abs(value) >= 100 ? value.ToString("F0") : Math.Abs(value) >= 1 ? value.ToString("F2") : value.ToString("G3");

    static string Key(string metric) => new(metric.ToLowerInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_').ToArray());
}
