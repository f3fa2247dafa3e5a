using System.Globalization;
using System.Text;
using Medformer.Eval.Protocols;

namespace Medformer.Eval.Reports;

/// <summary>One cell of a table: the mean and sample standard deviation (n − 1) of a metric over a cell's runs.</summary>
public sealed record MeanStd(double Mean, double Std, int Count)
{
    /// <summary>Over the finite values (NaN, an undefined score, is skipped); NaN when none is finite.</summary>
    public static MeanStd Of(IEnumerable<double> values)
    {
        var kept = values.Where(double.IsFinite).ToList();
        if (kept.Count == 0) return new MeanStd(double.NaN, double.NaN, 0);
        double mean = kept.Average();
        double std = kept.Count < 2 ? 0 : Math.Sqrt(kept.Sum(v => (v - mean) * (v - mean)) / (kept.Count - 1));
        return new MeanStd(mean, std, kept.Count);
    }

    /// <summary>The std where there is a spread to show (two runs or more); NaN for one run, which the CSV leaves empty and the JSON writes as null.</summary>
    public double Spread => Count >= 2 ? Std : double.NaN;

    /// <summary>"80.6 ± 0.7" (scaled, one decimal place by default); "80.6 (n=1)" for one run, which has no spread to show.</summary>
    public string Format(double scale = 100, int decimals = 1) => Count switch
    {
        0 => "–",
        1 => $"{(Mean * scale).ToString("F" + decimals, CultureInfo.InvariantCulture)} (n=1)",
        _ => $"{(Mean * scale).ToString("F" + decimals, CultureInfo.InvariantCulture)} ± " +
            $"{(Std * scale).ToString("F" + decimals, CultureInfo.InvariantCulture)}",
    };
}

/// <summary>
/// A protocol's results for one metric laid out as the seed talks' tables: a row per initialisation (method), a
/// column per fraction of the labels, each cell the mean ± std over its runs.
/// </summary>
public sealed class ResultTable
{
    public MetricInfo Metric { get; }
    public IReadOnlyList<string> Rows { get; }
    public IReadOnlyList<double> Fractions { get; }
    readonly Dictionary<(string, double), MeanStd> cells;

    public ResultTable(IReadOnlyList<CellResult> results, MetricInfo metric, IReadOnlyList<string>? rows = null, IReadOnlyList<double>? fractions = null)
    {
        Metric = metric;
        Rows = rows ?? [.. results.Select(r => r.Init).Distinct()];
        Fractions = fractions ?? [.. results.Select(r => r.Fraction).Distinct().Order()];
        cells = results.GroupBy(r => (r.Init, r.Fraction))
            .ToDictionary(g => g.Key, g => MeanStd.Of(g.Select(r => r.Metrics.TryGetValue(metric.Name, out double v) ? v : double.NaN)));
    }

    public MeanStd this[string row, double fraction] => cells.TryGetValue((row, fraction), out var cell) ? cell : new MeanStd(double.NaN, double.NaN, 0);

    /// <summary>The Markdown table: "| METRIC, mean ± std over N runs | 1% | 10% | 100% |", the best mean of each column in bold.</summary>
    public string ToMarkdown()
    {
        var text = new StringBuilder();
        var counts = Rows.SelectMany(r => Fractions.Select(f => this[r, f].Count)).Distinct().Order().ToList();
        string runs = counts.Count == 1 ? $"{counts[0]}" : $"{counts.FirstOrDefault()}–{counts.LastOrDefault()}";
        string unit = Metric.Scale == 100 ? " (%)" : "";
        text.AppendLine($"| {Metric.Title}{unit}, mean ± std over {runs} runs | {string.Join(" | ", Fractions.Select(ProtocolRunner.Percent))} |");
        text.AppendLine($"| --- |{string.Concat(Fractions.Select(_ => " --- |"))}");
        foreach (string row in Rows)
        {
            var parts = Fractions.Select(f =>
            {
                var cell = this[row, f];
                string value = cell.Format(Metric.Scale, Metric.Decimals);
                return cell.Count > 0 && Rows.Count > 1 && IsBest(row, f) ? $"**{value}**" : value;
            });
            text.AppendLine($"| {row} | {string.Join(" | ", parts)} |");
        }
        return text.ToString();
    }

    bool IsBest(string row, double fraction)
    {
        double mine = this[row, fraction].Mean;
        var others = Rows.Select(r => this[r, fraction]).Where(c => c.Count > 0).Select(c => c.Mean);
        return Metric.HigherIsBetter ? others.All(v => v <= mine) : others.All(v => v >= mine);
    }
}
