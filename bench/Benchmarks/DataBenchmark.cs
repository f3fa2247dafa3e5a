using System.Diagnostics;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Pretrain;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run data</c>: (a) samples per second of load + two-view augmentation of 28×28 images read through the
/// MedMNIST-layout reader (the phantom corpus), with the pretraining job's augmentation; (b) random 96³ crops per
/// second from CT volumes in the preprocessed cache; each next to torch's DataLoader with worker processes on the same
/// pipeline (reference/data.py). The goal of (a) is ten times what Medformer small trains on per second in bf16,
/// measured in the same run.
/// </summary>
public static class DataBenchmark
{
    const int Batch = 64, Batches = 40, Workers = 2, Volume = 128, Volumes = 6;

    public static BenchReport Run(BenchOptions options)
    {
        var reference = PythonReference.Run("data.py", "--threads", options.Threads.ToString(), "--workers", Workers.ToString(),
            "--batches", Batches.ToString(), "--volume", Volume.ToString());
        string home = Directory.CreateTempSubdirectory("medformer-bench-data-").FullName;
        try
        {
            using var phantom = Phantom.Open(PhantomSpec.Default2d, "train", Path.Combine(home, "phantom"));
            var augment = PretrainJob.Augmentation(new AugmentSpec(), phantom, MedformerConfig.Tiny);
            var twoViews = new DataLoader([new LoaderSource(phantom, Transform: augment, Views: 2)], new LoaderOptions(Batch, Workers: Workers));
            double twoViewRate = Rate(twoViews, Batches, Batch);

            using var raw = new TensorCorpus("ct", randn([Volumes, 1, Volume, Volume, Volume]), organ: "abdomen", modality: "ct");
            using var cached = CachedCorpus.Open(raw, null, Path.Combine(home, "cache"));
            ITransform crop = new Compose([new RandSpatialCrop([96]), new RandFlip(0.5, [0]), new RandFlip(0.5, [1]), new RandFlip(0.5, [2]),
                new RandScaleIntensity(0.1, Probability: 1.0)]);
            var crops = new DataLoader([new LoaderSource(cached, Transform: crop)], new LoaderOptions(2, Workers: Workers));
            double cropRate = Rate(crops, Math.Max(10, Batches / 4), 2);

            // The goal compares loading with training in the precision this CPU trains fastest in.
            var trained = Bf16.Timed ? Precision.Bf16 : Precision.Fp32;
            var (step, _, _) = ModelBenchmark.TimeSteps(MedformerConfig.Small, trained);
            double modelRate = ModelBenchmark.BatchSize / step.Median;

            var report = new BenchReport("data");
            var headline = report.Add(new BenchRow("28x28 load + two views", twoViewRate, reference.GetProperty("two_view_samples_per_s").GetDouble(),
                "samples/s"));
            report.Add(new BenchRow("96^3 crops from the cache", cropRate, reference.GetProperty("ct_crops_per_s").GetDouble(), "crops/s"));
            report.Add(new BenchRow($"small {trained.Name()} training (for the goal)", modelRate, null, "samples/s"));
            report.Headline(headline);
            report.Extra($"two_views_over_small_{trained.Name()}_training", Math.Round(twoViewRate / modelRate, 1));
            report.Extra("goal", $"two-view loading at least 10x the rate small trains at in {trained.Name()} (bf16 where the CPU has it)");
            report.Extra("workers", $"{Workers} (ours: threads in this process; reference: worker processes, 1 torch thread each)");
            report.Extra("peak_rss_mib", Math.Round(Resident.PeakMiB));
            report.Extra("reference_peak_rss_mib", Math.Round(reference.GetProperty("peak_rss_mib").GetDouble()));
            return report;
        }
        finally
        {
            Directory.Delete(home, recursive: true);
        }
    }

    static double Rate(DataLoader loader, int batches, int perBatch)
    {
        using var stream = loader.Batches().GetEnumerator();
        for (int i = 0; i < 3; i++)
        {
            stream.MoveNext();
            stream.Current.Dispose();
        }
        var clock = Stopwatch.StartNew();
        for (int i = 0; i < batches; i++)
        {
            stream.MoveNext();
            stream.Current.Dispose();
        }
        return batches * perBatch / clock.Elapsed.TotalSeconds;
    }
}
