using ScottPlot;

namespace Medformer.Tracking;

/// <summary>
/// Metrics over steps as small multiples: one panel per metric (its own y axis, so throughput does not flatten loss and
/// learning rate to zero), one line per run, the step axis shared, the legend outside the data; PNG or SVG (ScottPlot 5).
/// </summary>
public static class MetricPlot
{
    public const int Width = 800;
    public const int Height = 500;

    /// <summary>The plot's size: 800×500, taller by 240 px a row past two rows of panels.</summary>
    public static (int Width, int Height, int Columns, int Rows) Size(int panels)
    {
        int columns = panels > 3 ? 2 : 1, rows = (panels + columns - 1) / columns;
        return (Width, Math.Max(Height, rows > 2 ? rows * 240 : Height), columns, rows);
    }

    /// <summary>Writes the plot to <paramref name="path"/>; the extension (.png or .svg) picks the format.</summary>
    /// <param name="panels">Per metric (the panel's title), its series: a run's label and points.</param>
    public static void Save(string path, IReadOnlyList<(string Metric, IReadOnlyList<(string Label, IReadOnlyList<Metric> Points)> Series)> panels)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension is not (".png" or ".svg")) throw new ArgumentException($"--plot {path}: the file must end in .png or .svg");
        if (panels.Count == 0) throw new ArgumentException($"--plot {path}: no metric to plot");
        var (width, height, columns, rows) = Size(panels.Count);
        var multiplot = new ScottPlot.Multiplot();
        multiplot.AddPlots(panels.Count);
        multiplot.Layout = new ScottPlot.MultiplotLayouts.Grid(rows, columns);
        var palette = new ScottPlot.Palettes.Category10();
        var labels = panels.SelectMany(p => p.Series.Select(s => s.Label)).Distinct().ToList();
        for (int i = 0; i < panels.Count; i++)
        {
            var plot = multiplot.GetPlot(i);
            var (metric, series) = panels[i];
            foreach (var (label, points) in series)
            {
                // Steps in order; a step logged twice (a resumed run) keeps its last point.
                var ordered = points.GroupBy(p => p.Step).Select(g => g.Last()).OrderBy(p => p.Step).Where(p => double.IsFinite(p.Value)).ToList();
                if (ordered.Count == 0) continue;
                var line = plot.Add.Scatter(ordered.Select(p => (double)p.Step).ToArray(), ordered.Select(p => p.Value).ToArray());
                line.Color = palette.GetColor(labels.IndexOf(label));   // a run has one colour in every panel
                line.LegendText = label;
                line.MarkerSize = ordered.Count > 50 ? 0 : 4;
                line.LineWidth = 1.5f;
            }
            plot.Title(metric, size: 13);
            if (i >= panels.Count - columns) plot.XLabel("step", size: 12);
            plot.ShowLegend(Edge.Right);   // outside the data, beside every panel so the step axes line up
        }
        multiplot.SharedAxes.ShareX([.. Enumerable.Range(0, panels.Count).Select(multiplot.GetPlot)]);
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        if (extension == ".png") multiplot.SavePng(path, width, height);
        else
        {
            // The multiplot has no SVG writer of its own: render it on Skia's SVG canvas.
            using var file = File.Create(path);
            using (var canvas = SkiaSharp.SKSvgCanvas.Create(new SkiaSharp.SKRect(0, 0, width, height), file))
                multiplot.Render(canvas, new PixelRect(0, width, height, 0));
        }
    }
}
