using Medformer.Eval.Protocols;
using ScottPlot;

namespace Medformer.Eval.Reports;

/// <summary>
/// The report's figures with ScottPlot 5, each as PNG and SVG: per metric, the mean against the fraction of labels
/// (logarithmic axis) with ± std error bars, a line per initialisation (METRIC.png); the training loss against
/// the step (curves.png) and the validation metric at each check (validation.png), a line per run at the largest
/// fraction, coloured by initialisation.
/// </summary>
public static class Plots
{
    public const int Width = 800, Height = 500;

    /// <returns>The files written.</returns>
    public static IReadOnlyList<string> Write(string directory, IReadOnlyList<ResultTable> tables, IReadOnlyList<CellResult> results)
    {
        var files = new List<string>();
        foreach (var table in tables) files.AddRange(Save(FractionPlot(table), Path.Combine(directory, table.Metric.Name)));
        if (results.Count > 0)
        {
            double largest = results.Max(r => r.Fraction);
            var runs = results.Where(r => r.Fraction == largest).ToList();
            var rows = tables.FirstOrDefault()?.Rows ?? [.. runs.Select(r => r.Init).Distinct()];
            string at = $"{ProtocolRunner.Percent(largest)} of the labels";
            files.AddRange(Save(CurvePlot(runs, rows, r => r.Loss, $"Training loss ({at})", "loss"), Path.Combine(directory, "curves")));
            files.AddRange(Save(CurvePlot(runs, rows, r => r.Validation, $"Validation {runs[0].SelectionMetric} ({at})", runs[0].SelectionMetric),
                Path.Combine(directory, "validation")));
        }
        return files;
    }

    static Plot FractionPlot(ResultTable table)
    {
        var plot = new Plot();
        var ticks = new ScottPlot.TickGenerators.NumericManual();
        foreach (double f in table.Fractions) ticks.AddMajor(Math.Log10(f), ProtocolRunner.Percent(f));
        plot.Axes.Bottom.TickGenerator = ticks;
        for (int i = 0; i < table.Rows.Count; i++)
        {
            var cells = table.Fractions.Select(f => (f, cell: table[table.Rows[i], f])).Where(p => p.cell.Count > 0).ToList();
            if (cells.Count == 0) continue;
            double[] xs = [.. cells.Select(p => Math.Log10(p.f))];
            double[] ys = [.. cells.Select(p => p.cell.Mean * table.Metric.Scale)];
            double[] errors = [.. cells.Select(p => p.cell.Std * table.Metric.Scale)];
            var color = Palette(i);
            var line = plot.Add.Scatter(xs, ys, color);
            line.LegendText = table.Rows[i];
            line.LineWidth = 2;
            line.MarkerSize = 7;
            var bars = plot.Add.ErrorBar(xs, ys, errors);
            bars.Color = color;
        }
        string unit = table.Metric.Scale == 100 ? " (%)" : "";
        plot.Title($"{table.Metric.Title} against the fraction of labels (mean ± std)");
        plot.XLabel("fraction of the training labels");
        plot.YLabel(table.Metric.Title + unit);
        plot.ShowLegend(Alignment.LowerRight);
        return plot;
    }

    static Plot CurvePlot(IReadOnlyList<CellResult> runs, IReadOnlyList<string> rows, Func<CellResult, IReadOnlyList<CurvePoint>> curve, string title,
        string label)
    {
        var plot = new Plot();
        for (int i = 0; i < rows.Count; i++)
        {
            bool first = true;
            foreach (var run in runs.Where(r => r.Init == rows[i]))
            {
                var points = curve(run).Where(p => double.IsFinite(p.Value)).ToList();
                if (points.Count == 0) continue;
                var line = plot.Add.Scatter(points.Select(p => (double)p.Step).ToArray(), points.Select(p => p.Value).ToArray(), Palette(i));
                line.MarkerSize = points.Count == 1 ? 5 : 0;
                if (first) line.LegendText = rows[i];
                first = false;
            }
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.YLabel(label);
        plot.ShowLegend(Alignment.UpperRight);
        return plot;
    }

    static Color Palette(int i) => new ScottPlot.Palettes.Category10().GetColor(i);

    static IEnumerable<string> Save(Plot plot, string stem)
    {
        plot.SavePng(stem + ".png", Width, Height);
        plot.SaveSvg(stem + ".svg", Width, Height);
        return [stem + ".png", stem + ".svg"];
    }
}
