using Medformer.Datasets;
using Medformer.Heads;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run heads</c>: sliding-window segmentation of a 128³ volume (windows of 32³, overlap 0.25, Gaussian
/// blending, 4 windows per call: 125 windows, 4.1 M voxel queries in all) by a Medformer <c>tiny</c> with a
/// <see cref="SegmentationHead"/>, against the PyTorch twin (reference/sliding_window.py: MONAI's
/// sliding_window_inference written out, the same model and read-out) on the same threads, both fp32 without gradients.
/// </summary>
public static class HeadsBenchmark
{
    const int Size = 128, Roi = 32, WindowBatch = 4, Classes = 2, Repeats = 3;

    public static BenchReport Run(BenchOptions options)
    {
        var config = MedformerConfig.Tiny;
        string configFile = Path.Combine(Path.GetTempPath(), $"medformer-bench-{Guid.NewGuid():N}.json");
        File.WriteAllText(configFile, config.ToJson());
        var reference = PythonReference.Run("sliding_window.py", "--threads", options.Threads.ToString(), "--config", configFile,
            "--size", Size.ToString(), "--roi", Roi.ToString(), "--batch", WindowBatch.ToString(), "--classes", Classes.ToString(), "--repeats", Repeats.ToString());
        File.Delete(configFile);

        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new global::Medformer.Medformer(config), new SegmentationHead(config, Classes, "3d"));
        using var volume = randn([1, 1, Size, Size, Size]);
        SampleMeta[] metas = [new("bench", "randn", 0, "abdomen", "ct", "3d", [1, 1, 1], [])];
        var window = new SlidingWindowOptions(BatchSize: WindowBatch);
        long[] shape = [];
        var timing = Timing.Measure(() =>
        {
            using var mask = tuner.PredictSlidingWindow(volume, [Roi, Roi, Roi], metas, window);
            shape = mask.shape;
        }, warmup: 1, repeats: Repeats);
        double theirs = reference.GetProperty("seconds").GetDouble();
        int windows = SlidingWindow.Origins([Size, Size, Size], [Roi, Roi, Roi], window.Overlap).Count;

        var report = new BenchReport("heads");
        var headline = report.Add(new BenchRow("sliding window 128^3 (tiny, fp32)", timing.Median, theirs, "s", HigherIsBetter: false));
        report.Add(new BenchRow("voxels per second", Math.Pow(Size, 3) / timing.Median, Math.Pow(Size, 3) / theirs, "voxels/s"));
        report.Headline(headline);
        report.Extra("windows", windows);
        report.Extra("twin_windows", reference.GetProperty("windows").GetInt32());
        report.Extra("mask_shape", string.Join("x", shape));
        report.Extra("peak_rss_mib", Math.Round(Resident.PeakMiB));
        report.Extra("twin_peak_rss_mib", Math.Round(reference.GetProperty("peak_rss_mib").GetDouble()));
        return report;
    }
}
