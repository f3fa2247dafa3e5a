using System.Diagnostics;
using System.Text.Json;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run heads</c>, Medformer <c>tiny</c> against the PyTorch twin on the same threads:
/// <list type="bullet">
/// <item>sliding-window segmentation of a 128³ volume (windows of 32³, overlap 0.25, Gaussian blending, 4 windows per
/// call: 125 windows, 4.1 M voxel queries in all) with a <see cref="SegmentationHead"/>, against
/// reference/sliding_window.py (MONAI's sliding_window_inference written out, the same model and read-out), both fp32
/// without gradients;</item>
/// <item>full fine-tuning through <see cref="FineTuner.Fit"/> (the trainer, AdamW, clipping, the precision policy, the
/// loader) of a <see cref="ClassificationHead"/> on 28×28 images, batch 64, and of a 3D <see cref="SegmentationHead"/>
/// on 32³ crops, batch 4, in bf16 (our default) and fp32, against reference/finetune.py in fp32 (PyTorch 1.13's CPU
/// autocast to bf16 fails on this model).</item>
/// </list>
/// </summary>
public static class HeadsBenchmark
{
    const int Size = 128, Roi = 32, WindowBatch = 4, Classes = 2, Repeats = 3;
    const int ImageSize = 28, ImageBatch = 64, ImageClasses = 10, CropBatch = 4, Distinct = 4;
    const int ImageWarmup = 3, ImageSteps = 30, CropWarmup = 2, CropSteps = 10;

    /// <summary>The PyTorch twins' results: the sliding window, and fine-tuning on images and on crops.</summary>
    sealed record Twins(JsonElement SlidingWindow, JsonElement Images, JsonElement Crops);

    /// <summary>Our sliding window: its timing, the mask's shape, the peak resident memory after it, the windows per volume.</summary>
    sealed record SlidingRun(Timing Timing, long[] MaskShape, double PeakMiB, int Windows);

    /// <summary>Our fine-tuning step times; the bf16 ones only where <see cref="Bf16.Timed"/>.</summary>
    sealed record FineTuneRuns(StepTimes? ImageBf16, StepTimes ImageFp32, StepTimes? CropBf16, StepTimes CropFp32);

    public static BenchReport Run(BenchOptions options)
    {
        var config = MedformerConfig.Tiny;
        var twins = RunTwins(config, options.Threads);
        // Sliding windows first, so their peak resident memory is not the fine-tuning's.
        var sliding = TimeSlidingWindow(config);
        var tuning = new FineTuneRuns(Bf16.Timed ? FineTune(config, Precision.Bf16, crops: false) : null, FineTune(config, Precision.Fp32, crops: false),
            Bf16.Timed ? FineTune(config, Precision.Bf16, crops: true) : null, FineTune(config, Precision.Fp32, crops: true));

        var report = new BenchReport("heads");
        AddRows(report, twins, sliding, tuning);
        report.Extra("windows", sliding.Windows);
        report.Extra("twin_windows", twins.SlidingWindow.GetProperty("windows").GetInt32());
        report.Extra("mask_shape", string.Join("x", sliding.MaskShape));
        report.Extra("peak_rss_mib", Math.Round(sliding.PeakMiB));
        report.Extra("twin_peak_rss_mib", Math.Round(twins.SlidingWindow.GetProperty("peak_rss_mib").GetDouble()));
        AddFineTuneExtras(report, twins, tuning);
        return report;
    }

    /// <summary>The twins, on the same threads and the same config: the sliding window and the two fine-tuning runs.</summary>
    static Twins RunTwins(MedformerConfig config, int threads) => PythonReference.WithConfig(config, configFile => new Twins(
        PythonReference.Run("sliding_window.py", "--threads", threads.ToString(), "--config", configFile,
            "--size", Size.ToString(), "--roi", Roi.ToString(), "--batch", WindowBatch.ToString(), "--classes", Classes.ToString(), "--repeats",
                Repeats.ToString()),
        PythonReference.Run("finetune.py", "--threads", threads.ToString(), "--config", configFile, "--head", "classification",
            "--batch", ImageBatch.ToString(), "--size", ImageSize.ToString(), ImageSize.ToString(), "--classes", ImageClasses.ToString(),
            "--warmup", ImageWarmup.ToString(), "--steps", ImageSteps.ToString(), "--batches", Distinct.ToString()),
        PythonReference.Run("finetune.py", "--threads", threads.ToString(), "--config", configFile, "--head", "segmentation",
            "--batch", CropBatch.ToString(), "--size", Roi.ToString(), Roi.ToString(), Roi.ToString(), "--classes", Classes.ToString(),
            "--warmup", CropWarmup.ToString(), "--steps", CropSteps.ToString(), "--batches", Distinct.ToString())));

    /// <summary>Segments a random 128³ volume by sliding windows: one warm-up call, then <see cref="Repeats"/> timed ones.</summary>
    static SlidingRun TimeSlidingWindow(MedformerConfig config)
    {
        Seeding.SeedEverything(0);
        var window = new SlidingWindowOptions(BatchSize: WindowBatch);
        long[] shape = [];
        Timing timing;
        using (var tuner = new FineTuner(new MedformerModel(config), new SegmentationHead(config, Classes, Dimensionality.Volume)))
        using (var volume = randn([1, 1, Size, Size, Size]))
        {
            SampleMeta[] metas = [new("bench", "randn", 0, "abdomen", "ct", Dimensionality.Volume, [1, 1, 1], [])];
            timing = Timing.Measure(() =>
            {
                using var mask = tuner.PredictSlidingWindow(volume, [Roi, Roi, Roi], metas, window);
                shape = mask.shape;
            }, warmup: 1, repeats: Repeats);
        }
        return new SlidingRun(timing, shape, Resident.PeakMiB, SlidingWindow.Origins([Size, Size, Size], [Roi, Roi, Roi], window.Overlap).Count);
    }

    /// <summary>The table: the sliding window's seconds (the headline) and voxel rate, and each fine-tuning run's samples per second.</summary>
    static void AddRows(BenchReport report, Twins twins, SlidingRun sliding, FineTuneRuns tuning)
    {
        double theirs = twins.SlidingWindow.GetProperty("seconds").GetDouble(), timed = sliding.Timing.Median;
        double twinImageStep = twins.Images.GetProperty("step_s").GetDouble(), twinCropStep = twins.Crops.GetProperty("step_s").GetDouble();
        var (imageBf16, imageFp32, cropBf16, cropFp32) = tuning;
        var headline = report.Add(new BenchRow("sliding window 128^3 (tiny, fp32)", timed, theirs, "s", HigherIsBetter: false));
        report.Add(new BenchRow("voxels per second", Math.Pow(Size, 3) / timed, Math.Pow(Size, 3) / theirs, "voxels/s"));
        if (imageBf16 is not null) report.Add(new BenchRow($"fine-tune classification {ImageSize}^2, batch {ImageBatch}, bf16", ImageBatch / imageBf16.Median,
            ImageBatch / twinImageStep, "samples/s"));
        report.Add(new BenchRow($"fine-tune classification {ImageSize}^2, batch {ImageBatch}, fp32", ImageBatch / imageFp32.Median, ImageBatch / twinImageStep,
            "samples/s"));
        if (cropBf16 is not null) report.Add(new BenchRow($"fine-tune segmentation {Roi}^3, batch {CropBatch}, bf16", CropBatch / cropBf16.Median,
            CropBatch / twinCropStep, "samples/s"));
        report.Add(new BenchRow($"fine-tune segmentation {Roi}^3, batch {CropBatch}, fp32", CropBatch / cropFp32.Median, CropBatch / twinCropStep,
            "samples/s"));
        report.Headline(headline);
    }

    static void AddFineTuneExtras(BenchReport report, Twins twins, FineTuneRuns tuning)
    {
        var (twinImages, twinCrops) = (twins.Images, twins.Crops);
        var (imageBf16, imageFp32, cropBf16, cropFp32) = tuning;
        report.Extra("finetune_twin_precision",
            "fp32 (PyTorch 1.13's CPU autocast to bf16 fails on this model); the pytorch column of the bf16 rows is that fp32 twin");
        report.Extra("finetune_timing",
            $"median of {ImageSteps} (classification) and {CropSteps} (segmentation) steps after {ImageWarmup} and {CropWarmup} warm-up ones: ours between " +
                $"the trainer's per-step log callbacks of FineTuner.Fit (full strategy, AdamW, clipping, precision policy; the loader's worker collates " +
                    $"random tensors from memory), the twin around its step over {Distinct} batches made before timing");
        report.Extra("finetune_mean_samples_per_s",
            $"classification {(imageBf16 is null ? "" : $"bf16 {ImageBatch / imageBf16.Mean:F1}, ")}fp32 {ImageBatch / imageFp32.Mean:F1}, twin " +
                $"{ImageBatch / twinImages.GetProperty("mean_step_s").GetDouble():F1}; segmentation " +
                    $"{(cropBf16 is null ? "" : $"bf16 {CropBatch / cropBf16.Mean:F2}, ")}fp32 {CropBatch / cropFp32.Mean:F2}, twin " +
                        $"{CropBatch / twinCrops.GetProperty("mean_step_s").GetDouble():F2}");
        report.Extra("finetune_trainable_parameters",
            $"classification {imageFp32.Parameters} (twin {twinImages.GetProperty("parameters").GetInt64()}), segmentation {cropFp32.Parameters} (twin " +
                $"{twinCrops.GetProperty("parameters").GetInt64()}; ours also holds the 2D neighbourhood projection, which 3D crops never use); the heads " +
                    "are tested equal in loss and gradients (HeadsBenchTwinTests)");
        var notices = new[] { imageBf16, imageFp32, cropBf16, cropFp32 }.OfType<StepTimes>().SelectMany(r => r.Notices).Distinct().ToList();
        if (notices.Count > 0) report.Extra("trainer_notices", string.Join(" | ", notices));
        Bf16.Note(report);
        report.Extra("finetune_peak_rss_mib", Math.Round(Resident.PeakMiB));
        report.Extra("twin_finetune_peak_rss_mib",
            $"classification {Math.Round(twinImages.GetProperty("peak_rss_mib").GetDouble())}, segmentation " +
                $"{Math.Round(twinCrops.GetProperty("peak_rss_mib").GetDouble())}");
    }

    sealed record StepTimes(double Median, double Mean, long Parameters, IReadOnlyList<string> Notices);

    /// <summary>Seconds per step of full fine-tuning through <see cref="FineTuner.Fit"/>: warm-up steps, then the timed ones.</summary>
    static StepTimes FineTune(MedformerConfig config, Precision precision, bool crops)
    {
        Seeding.SeedEverything(0);
        int batch = crops ? CropBatch : ImageBatch, warmup = crops ? CropWarmup : ImageWarmup, timed = crops ? CropSteps : ImageSteps;
        using var corpus = Corpus(crops, Distinct * batch);
        Head head = crops ? new SegmentationHead(config, Classes, Dimensionality.Volume) : new ClassificationHead(config, ImageClasses);
        using var tuner = new FineTuner(new MedformerModel(config), head);
        var stamps = new long[warmup + timed + 1];
        var notices = new List<string>();
        tuner.Fit(corpus, new FineTuneOptions { MaxSteps = warmup + timed, BatchSize = batch, Precision = precision, LogEvery = 1 },
            log: log => stamps[log.Step] = Stopwatch.GetTimestamp(), notice: notices.Add);
        var seconds = Enumerable.Range(warmup + 1, timed).Select(s => Stopwatch.GetElapsedTime(stamps[s - 1], stamps[s]).TotalSeconds).Order().ToArray();
        double mean = Stopwatch.GetElapsedTime(stamps[warmup], stamps[^1]).TotalSeconds / timed;
        long parameters = tuner.Model.parameters().Concat(tuner.Head.parameters()).Where(p => p.requires_grad).Sum(p => p.numel());
        return new StepTimes(seconds[timed / 2], mean, parameters, notices);
    }

    /// <summary>Random images (with random labels or label maps) in memory, as <see cref="TensorCorpus"/> keeps its own copies.</summary>
    static TensorCorpus Corpus(bool crops, int count)
    {
        using var scope = NewDisposeScope();
        return crops
            ? new TensorCorpus("bench", rand([count, 1, Roi, Roi, Roi]), targets: randint(0, Classes, [count, 1, Roi, Roi, Roi]), organ: "abdomen",
                modality: "ct")
            : new TensorCorpus("bench", rand([count, 1, ImageSize, ImageSize]), labels: randint(0, ImageClasses, [count]), organ: "chest", modality: "xray");
    }
}
