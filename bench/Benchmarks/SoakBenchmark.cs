using System.Diagnostics;
using Medformer.Pretrain;
using Medformer.Training;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run soak [--minutes N]</c>: the pretraining job as <c>./medformer pretrain</c> runs it (the default mix on
/// <c>tiny</c>, the embedded phantom corpus, loader workers, checkpoints) for N minutes (default 9, so the whole bench stays under ten) while
/// <see cref="GcPressure"/> forces collections and finalizers without pause. It reports the steps, the faults (an
/// exception out of the job: the soak counts it, resumes from the last checkpoint as a user would, and goes on; must
/// be 0), and resident memory each minute; growth is measured from minute 2 (after warm-up) to the end and must stay
/// under 1% (a 60-minute run is the real test: `--minutes 60`). A PNG of RSS over time goes to <c>--plot</c> (default soak-rss.png in the working folder).
/// </summary>
public static class SoakBenchmark
{
    const double MaxGrowthPercent = 1.0;
    static readonly TimeSpan SampleEvery = TimeSpan.FromSeconds(5);

    sealed record Sample(double Minutes, double RssMiB, double ManagedMiB, double MallocInUseMiB, double MallocHeldFreeMiB, long Steps);

    public static BenchReport Run(BenchOptions options)
    {
        if (options.Minutes < 3) throw new ArgumentException($"--minutes {options.Minutes}: a soak needs at least 3 (2 of warm-up, then growth is measured)");
        var duration = TimeSpan.FromMinutes(options.Minutes);
        string output = Directory.CreateTempSubdirectory("medformer-soak-").FullName;
        var samples = new List<Sample>();
        var faults = new List<string>();
        long steps = 0, skipped = 0, resumes = 0;
        var clock = Stopwatch.StartNew();
        using var deadline = new CancellationTokenSource(duration);
        using var pressure = new GcPressure();
        using var sampler = new Timer(_ =>
        {
            var (inUse, held) = Malloc.Now();
            lock (samples) samples.Add(new Sample(clock.Elapsed.TotalMinutes, Resident.CurrentMiB, GC.GetTotalMemory(false) / 1048576.0, inUse, held, Interlocked.Read(ref steps)));
        }, null, TimeSpan.Zero, SampleEvery);
        try
        {
            bool resume = false;
            while (!deadline.IsCancellationRequested)
            {
                try
                {
                    var config = new RunConfig { Model = "tiny" };
                    config.Schedule.MaxSteps = 100_000_000;  // the deadline ends the run, not the schedule
                    var result = PretrainJob.Run(config, output, new PretrainOverrides(Resume: resume), log =>
                    {
                        Interlocked.Exchange(ref steps, log.Step);
                        Interlocked.Exchange(ref skipped, log.SkippedSteps);
                    }, notice: null, deadline.Token);
                    steps = result.Training.Steps;
                    break;
                }
                catch (OperationCanceledException) when (deadline.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    faults.Add($"after step {Interlocked.Read(ref steps)}: {e.GetType().Name}: {e.Message.Split('\n')[0]}");
                    resume = TrainingCheckpoint.Latest(output) is not null;
                    resumes++;
                }
            }
        }
        finally
        {
            Directory.Delete(output, recursive: true);
        }
        sampler.Dispose();
        List<Sample> series;
        lock (samples) series = [.. samples];
        return Report(options, series, faults, Interlocked.Read(ref steps), Interlocked.Read(ref skipped), resumes, pressure.Collections, clock.Elapsed);
    }

    static BenchReport Report(BenchOptions options, List<Sample> series, List<string> faults, long steps, long skipped, long resumes,
        long collections, TimeSpan elapsed)
    {
        // RSS at each whole minute (the last sample before it) and at the end.
        var minutes = Enumerable.Range(1, (int)Math.Floor(series[^1].Minutes))
            .Select(m => series.Last(s => s.Minutes <= m)).Append(series[^1]).ToList();
        // Growth: the median RSS of the last W minutes against that of minutes 2 to 2 + W (right after warm-up), W five
        // minutes or, in a shorter run, half of what follows warm-up (the default 9-minute run: 3.5).
        // Medians, because malloc's trims make single samples dip by 10% (the plot shows them).
        double window = Math.Min(5, (series[^1].Minutes - 2) / 2);
        var earlySamples = series.Where(s => s.Minutes >= 2 && s.Minutes < 2 + window).ToList();
        var lateSamples = series.Where(s => s.Minutes >= series[^1].Minutes - window).ToList();
        double early = Median(earlySamples), late = Median(lateSamples);
        double growth = (late - early) / early * 100;
        double inUseEarly = Median(earlySamples, s => s.MallocInUseMiB);
        double inUseLate = Median(lateSamples, s => s.MallocInUseMiB);
        string span = $"minutes 2-{2 + window:0.#} -> last {window:0.#}";
        string plot = options.Plot ?? Path.Combine(Environment.CurrentDirectory, "soak-rss.png");
        Plot(plot, series, options.Minutes, steps, faults.Count);

        var report = new BenchReport("soak");
        var headline = report.Add(new BenchRow("steps per minute", steps / elapsed.TotalMinutes, null, "steps/min"));
        report.Add(new BenchRow("faults", faults.Count, null, "count", HigherIsBetter: false));
        report.Add(new BenchRow($"RSS growth (median, {span})", growth, null, "%", HigherIsBetter: false));
        report.Add(new BenchRow("malloc in use, same medians", inUseLate - inUseEarly, null, "MiB", HigherIsBetter: false));
        report.Add(new BenchRow("RSS at the end", series[^1].RssMiB, null, "MiB", HigherIsBetter: false));
        report.Headline(headline);
        report.Extra("verdict", faults.Count == 0 && growth < MaxGrowthPercent
            ? $"pass: 0 faults, RSS growth {growth:F2}% < {MaxGrowthPercent}% (median RSS {early:F0} -> {late:F0} MiB, {span})"
            : $"FAIL: {faults.Count} fault(s), RSS growth {growth:F2}% (limit {MaxGrowthPercent}%; median RSS {early:F0} -> {late:F0} MiB, {span})");
        report.Extra("steps", steps);
        report.Extra("minutes", Math.Round(elapsed.TotalMinutes, 1));
        report.Extra("skipped_non_finite_steps", skipped);
        report.Extra("forced_collections", collections);
        report.Extra("resumes_after_a_fault", resumes);
        if (faults.Count > 0) report.Extra("fault_list", string.Join(" | ", faults.Take(10)));
        report.Extra("rss_mib_each_minute", string.Join(" ", minutes.Select(s => $"{s.Minutes:F0}:{s.RssMiB:F0}")));
        report.Extra("managed_heap_mib_each_minute", string.Join(" ", minutes.Select(s => $"{s.Minutes:F0}:{s.ManagedMiB:F1}")));
        report.Extra("malloc_in_use_and_held_free_mib_each_minute", string.Join(" ", minutes.Select(s => $"{s.Minutes:F0}:{s.MallocInUseMiB:F0}/{s.MallocHeldFreeMiB:F0}")));
        report.Extra("plot", plot);
        report.Extra("run", "the default pretraining job (RunConfig defaults: tiny, inpainting 1 + SimCLR 0.5, phantom 2D, batch 64, 2 loader workers, checkpoints every 200 steps) with max_steps far beyond the deadline, under forced gen-0 collections and finalizers (a full collection every 64th)");
        return report;
    }

    static double Median(IEnumerable<Sample> samples, Func<Sample, double>? value = null)
    {
        var sorted = samples.Select(value ?? (s => s.RssMiB)).Order().ToArray();
        return sorted.Length == 0 ? double.NaN : sorted[sorted.Length / 2];
    }

    static void Plot(string path, List<Sample> series, double minutes, long steps, int faults)
    {
        var plot = new ScottPlot.Plot();
        var rss = plot.Add.Scatter(series.Select(s => s.Minutes).ToArray(), series.Select(s => s.RssMiB).ToArray());
        rss.LegendText = "resident memory (RSS)";
        rss.MarkerSize = 0;
        rss.LineWidth = 1.5f;
        var managed = plot.Add.Scatter(series.Select(s => s.Minutes).ToArray(), series.Select(s => s.ManagedMiB).ToArray());
        managed.LegendText = ".NET heap";
        var malloc = plot.Add.Scatter(series.Select(s => s.Minutes).ToArray(), series.Select(s => s.MallocInUseMiB).ToArray());
        malloc.LegendText = "malloc: bytes in use";
        malloc.MarkerSize = 0;
        malloc.LineWidth = 1.5f;
        managed.MarkerSize = 0;
        managed.LineWidth = 1.5f;
        var warmup = plot.Add.VerticalLine(2);
        warmup.LinePattern = ScottPlot.LinePattern.Dotted;
        warmup.LegendText = "end of warm-up";
        plot.Title($"bench/run soak: {minutes:0.#} min, {steps:N0} steps, {faults} faults, forced GC");
        plot.XLabel("minutes");
        plot.YLabel("MiB");
        plot.Axes.SetLimitsY(0, series.Max(s => s.RssMiB) * 1.15);
        plot.Legend.Alignment = ScottPlot.Alignment.LowerRight;
        plot.ShowLegend();
        string? folder = Path.GetDirectoryName(Path.GetFullPath(path));
        if (folder is not null) Directory.CreateDirectory(folder);
        plot.SavePng(path, 800, 500);
    }
}
