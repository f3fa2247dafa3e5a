using System.Globalization;
using System.Text;
using System.Text.Json;
using Medformer.Eval.Protocols;
using Medformer.Runtime;

namespace Medformer.Eval.Reports;

/// <summary>What <see cref="EvaluationReport.Write"/> left in the report folder.</summary>
public sealed record ReportFiles(string Markdown, string SummaryCsv, string CellsCsv, string Json, IReadOnlyList<string> Plots)
{
    public IEnumerable<string> All => [Markdown, SummaryCsv, CellsCsv, Json, .. Plots];
}

/// <summary>
/// A protocol's report: report.md (a seed-talk table per metric: method rows, fraction columns, mean ± std; then
/// the settings), summary.csv (init, fraction, metric, mean, std, runs), cells.csv (every run), report.json (the
/// tables as numbers) and plots as PNG and SVG (<see cref="Plots"/>): each metric against the fraction of labels
/// with ± std error bars, and the training curves.
/// </summary>
public static class EvaluationReport
{
    public static ReportFiles Write(string directory, string title, IReadOnlyList<CellResult> results, IReadOnlyList<MetricInfo> metrics,
        IReadOnlyList<string> rows, IReadOnlyList<double> fractions, IReadOnlyDictionary<string, string> settings)
    {
        Directory.CreateDirectory(directory);
        var tables = metrics.Select(m => new ResultTable(results, m, rows, fractions)).ToList();

        var markdown = new StringBuilder($"# {title}\n\n");
        foreach (var table in tables) markdown.AppendLine(table.ToMarkdown());
        markdown.AppendLine("Each run fine-tunes from its initialisation on its seed's draw of the labels, is chosen on validation");
        markdown.AppendLine($"(the check with the best {results.FirstOrDefault()?.SelectionMetric ?? "validation metric"}) and scored on the test split.\n");
        markdown.AppendLine("| setting | value |\n| --- | --- |");
        foreach (var (key, value) in settings.OrderBy(p => p.Key, StringComparer.Ordinal))
            markdown.AppendLine($"| {key} | {value.Replace("|", "\\|")} |");
        var plots = Plots.Write(directory, tables, results);
        markdown.AppendLine();
        foreach (var plot in plots.Where(p => p.EndsWith(".png", StringComparison.Ordinal)))
            markdown.AppendLine($"![{Path.GetFileNameWithoutExtension(plot)}]({Path.GetFileName(plot)})");
        string md = Atomic(Path.Combine(directory, "report.md"), markdown.ToString());

        var summary = new StringBuilder("init,fraction,metric,mean,std,runs\n");
        foreach (var table in tables)
            foreach (string row in rows)
                foreach (double f in fractions)
                {
                    var cell = table[row, f];
                    summary.AppendLine(string.Join(",", Csv(row), F(f), table.Metric.Name, F(cell.Mean), F(cell.Spread),
                        cell.Count.ToString(CultureInfo.InvariantCulture)));
                }
        string summaryCsv = Atomic(Path.Combine(directory, "summary.csv"), summary.ToString());

        var names = results.SelectMany(r => r.Metrics.Keys).Distinct().ToList();
        var cells = new StringBuilder($"init,fraction,seed,train_count,{string.Join(",", names)},selection_metric,selected_step,selected_value,seconds\n");
        foreach (var r in results)
            cells.AppendLine(string.Join(",", [Csv(r.Init), F(r.Fraction), r.Seed.ToString(CultureInfo.InvariantCulture),
                r.TrainCount.ToString(CultureInfo.InvariantCulture),
                .. names.Select(n => r.Metrics.TryGetValue(n, out double v) ? F(v) : ""), r.SelectionMetric,
                    r.SelectedStep.ToString(CultureInfo.InvariantCulture),
                F(r.SelectedValue), F(r.Seconds)]));
        string cellsCsv = Atomic(Path.Combine(directory, "cells.csv"), cells.ToString());

        var json = JsonSerializer.Serialize(new
        {
            title,
            settings,
            fractions,
            tables = tables.Select(t => new
            {
                metric = t.Metric.Name,
                rows = rows.Select(row => new
                {
                    init = row,
                    cells = fractions.Select(f => new { fraction = f, mean = Finite(t[row, f].Mean), std = Finite(t[row, f].Spread), runs = t[row, f].Count }),
                }),
            }),
        }, new JsonSerializerOptions { WriteIndented = true });
        string jsonPath = Atomic(Path.Combine(directory, "report.json"), json);
        return new ReportFiles(md, summaryCsv, cellsCsv, jsonPath, plots);
    }

    static double? Finite(double v) => double.IsFinite(v) ? v : null;

    static string F(double v) => double.IsNaN(v) ? "" : v.ToString("R", CultureInfo.InvariantCulture);

    static string Csv(string text) => text.IndexOfAny([',', '"', '\n']) >= 0 ? $"\"{text.Replace("\"", "\"\"")}\"" : text;

    // A unique sibling, fsynced, renamed: two reports written into one folder never share a temporary.
    static string Atomic(string path, string text)
    {
        AtomicFile.WriteAllText(path, text);
        return path;
    }
}
