namespace Medformer.Tracking;

/// <summary>Metrics over steps, one line per run and metric, as a PNG or SVG (ScottPlot 5).</summary>
public static class MetricPlot
{
    public const int Width = 900;
    public const int Height = 520;

    /// <summary>Writes the plot to <paramref name="path"/>; the extension (.png or .svg) picks the format.</summary>
    public static void Save(string path, IReadOnlyList<(string Label, IReadOnlyList<Metric> Points)> series, string title)
    {
        string extension = Path.GetExtension(path).ToLowerInvariant();
        if (extension is not (".png" or ".svg")) throw new ArgumentException($"--plot {path}: the file must end in .png or .svg");
        var plot = new ScottPlot.Plot();
        foreach (var (label, points) in series)
        {
            // Steps in order; a step logged twice (a resumed run) keeps its last point.
            var ordered = points.GroupBy(p => p.Step).Select(g => g.Last()).OrderBy(p => p.Step).Where(p => double.IsFinite(p.Value)).ToList();
            if (ordered.Count == 0) continue;
            var line = plot.Add.Scatter(ordered.Select(p => (double)p.Step).ToArray(), ordered.Select(p => p.Value).ToArray());
            line.LegendText = label;
            line.MarkerSize = ordered.Count > 50 ? 0 : 4;
            line.LineWidth = 1.5f;
        }
        plot.Title(title);
        plot.XLabel("step");
        plot.ShowLegend();
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        if (extension == ".png") plot.SavePng(path, Width, Height);
        else plot.SaveSvg(path, Width, Height);
    }
}
