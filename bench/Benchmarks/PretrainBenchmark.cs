using System.Diagnostics;
using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Pretrain;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run pretrain</c>: the pretraining job's default objective mix (RunConfig's: inpainting 1, SimCLR 0.5)
/// on Medformer <c>small</c>, batch 64 of 28×28 images with two views, through the real <see cref="Trainer"/> and
/// <see cref="Pretraining"/> task, in bf16 and fp32, next to the PyTorch twin (reference/pretrain.py) in fp32 on the
/// same threads; model-FLOP utilisation against the GEMM rates of the same run; resident memory over 1,000 steps
/// (of Medformer <c>tiny</c>, batch 16, with the same mix and trainer: a leak is per step, and small's steps are slow).
/// </summary>
/// <remarks>
/// Loading is not timed: a few two-view batches are made up front by a <see cref="DataLoader"/> with the job's
/// augmentation over an in-memory corpus, and the trainer gets copies of them in turn (a 0.4 MB clone per step).
/// Steps are timed between the trainer's per-step log callbacks, so the timing covers the whole loop (loss,
/// backward, clipping, AdamW, the precision policy) and not the checkpoint it writes after the last step.
/// </remarks>
public static class PretrainBenchmark
{
    const int Batch = 64, Size = 28, Warmup = 2, Timed = 8, Distinct = 4, MemorySteps = 1000, MemoryFirst = 100, MemoryBatch = 16;

    /// <summary>
    /// What the report is made of: the twins' steps (small on the benchmark's threads, tiny on one), the memory run,
    /// the fp32 GEMM rate, our step times (small, and tiny on one thread; bf16 only where <see cref="Bf16.Timed"/>) and
    /// small's FLOPs per step.
    /// </summary>
    sealed record Measurements(JsonElement Twin, JsonElement TinyTwin, MemoryProfile Memory, double Fp32Gemm, StepTimes Fp32, StepTimes? Bf16,
        StepTimes TinyFp32, StepTimes? TinyBf16, StepFlops Flops);

    public static BenchReport Run(BenchOptions options)
    {
        var measured = Measure(options);
        var report = new BenchReport("pretrain");
        AddRows(report, measured);
        AddFlops(report, measured);
        AddTimingAndMemory(report, measured);
        return report;
    }

    static Measurements Measure(BenchOptions options)
    {
        var config = MedformerConfig.Small;
        var reference = Twin(config, options.Threads);
        var tinyReference = Twin(MedformerConfig.Tiny, threads: 1);

        // Memory first, while this process's allocator holds nothing freed that a leak could hide in.
        var memory = Memory(MedformerConfig.Tiny);
        double fp32Gemm = RuntimeBenchmark.GemmRate(ScalarType.Float32);
        var fp32 = Throughput(config, Precision.Fp32);
        var bf16 = Bf16.Timed ? Throughput(config, Precision.Bf16) : null;
        // tiny on one thread: a step of many small ops, where the cost of each call through TorchSharp shows.
        TorchRuntime.SetThreads(1);
        var tinyFp32 = Throughput(MedformerConfig.Tiny, Precision.Fp32);
        var tinyBf16 = Bf16.Timed ? Throughput(MedformerConfig.Tiny, Precision.Bf16) : null;
        TorchRuntime.SetThreads(options.Threads);
        var flops = StepFlops.Of(config, fp32.MaskRatio, new RunConfig().Objectives.Keys);
        return new Measurements(reference, tinyReference, memory, fp32Gemm, fp32, bf16, tinyFp32, tinyBf16, flops);
    }

    /// <summary>Samples per second of small (the headlines) and of tiny on one thread, against the twin's; the memory run's growth.</summary>
    static void AddRows(BenchReport report, Measurements m)
    {
        double twinStep = m.Twin.GetProperty("step_s").GetDouble();
        var fp32Row = report.Add(new BenchRow("small pretrain step fp32", Batch / m.Fp32.MedianStep, Batch / twinStep, "samples/s"));
        report.Headline(fp32Row);
        if (m.Bf16 is { } bf16) report.Headline(report.Add(new BenchRow("small pretrain step bf16", Batch / bf16.MedianStep, Batch / twinStep, "samples/s")));
        double tinyTwinStep = m.TinyTwin.GetProperty("step_s").GetDouble();
        report.Add(new BenchRow("tiny pretrain step fp32, 1 thread", Batch / m.TinyFp32.MedianStep, Batch / tinyTwinStep, "samples/s"));
        if (m.TinyBf16 is { } tinyBf16)
            report.Add(new BenchRow("tiny pretrain step bf16, 1 thread", Batch / tinyBf16.MedianStep, Batch / tinyTwinStep, "samples/s"));
        report.Add(new BenchRow($"tiny RSS growth, step {MemoryFirst}->{MemorySteps}", m.Memory.Growth, null, "MiB", HigherIsBetter: false));
    }

    /// <summary>The mix and model, the FLOPs counted, and model-FLOP utilisation against the GEMM rates (bf16's measured here, where timed).</summary>
    static void AddFlops(BenchReport report, Measurements m)
    {
        var (fp32, flops, fp32Gemm) = (m.Fp32, m.Flops, m.Fp32Gemm);
        double twinStep = m.Twin.GetProperty("step_s").GetDouble();
        report.Extra("mix", string.Join(", ", fp32.Mix));
        report.Extra("parameters", fp32.Parameters);
        report.Extra("twin_parameters", m.Twin.GetProperty("parameters").GetInt64());
        report.Extra("forward_gflop_per_sample", string.Join(", ", flops.PerObjective.Select(o => $"{o.Key} {o.Value / 1e9:F3}"))
            + $" (inpainting's encoder reads {flops.Visible} of {flops.Tokens} tokens, its decoder {flops.Hidden} queries; simclr: 2 views)");
        report.Extra("step_gflop", Math.Round(flops.Step(Batch) / 1e9, 1));
        report.Extra("flops_counted",
            "ModelFlops (matmuls, convolution, attention products) of each objective's forward, times 3 for forward + backward; the heads (pixel, rotation, " +
                "projector: < 0.1%), norms, softmax and the optimizer are left out");
        report.Extra("fp32_gemm_gflops", Math.Round(fp32Gemm));
        report.Extra("mfu_fp32_of_fp32_gemm", Math.Round(flops.Step(Batch) / fp32.MedianStep / 1e9 / fp32Gemm, 3));
        report.Extra("twin_mfu_fp32_of_our_fp32_gemm", Math.Round(flops.Step(Batch) / twinStep / 1e9 / fp32Gemm, 3));
        if (m.Bf16 is { } bf16)
        {
            double bf16Gemm = RuntimeBenchmark.GemmRate(ScalarType.BFloat16);
            report.Extra("bf16_gemm_gflops", Math.Round(bf16Gemm));
            report.Extra("mfu_bf16_of_bf16_gemm", Math.Round(flops.Step(Batch) / bf16.MedianStep / 1e9 / bf16Gemm, 3));
            report.Extra("bf16_over_our_fp32", Math.Round(fp32.MedianStep / bf16.MedianStep, 2));
        }
    }

    /// <summary>Mean rates, how the steps were timed, the memory run's series, the trainer's notices and the peak resident memory (read now).</summary>
    static void AddTimingAndMemory(BenchReport report, Measurements m)
    {
        var (fp32, bf16, memory) = (m.Fp32, m.Bf16, m.Memory);
        Bf16.Note(report);
        report.Extra("mean_samples_per_s",
            $"{(bf16 is null ? "" : $"bf16 {Batch / bf16.MeanStep:F1}, ")}fp32 {Batch / fp32.MeanStep:F1}, twin " +
                $"{Batch / m.Twin.GetProperty("mean_step_s").GetDouble():F1}");
        report.Extra("timing",
            $"median of {Timed} trainer steps after {Warmup} warm-up, between the trainer's per-step log callbacks (the end-of-run checkpoint is written " +
                $"after the last one); {Distinct} two-view batches made before timing by the DataLoader with the job's augmentation, a copy per step; the " +
                    "twin: same batches' shapes, same warm-up and steps");
        report.Extra("memory",
            $"Medformer tiny, {MemoryPrecision.Name()}, batch {MemoryBatch}, same mix and trainer, {MemorySteps} steps at {memory.StepsPerSecond:F1} " +
                $"steps/s: RSS {memory.AtFirst:F0} MiB after step {MemoryFirst}, {memory.AtLast:F0} MiB after step {MemorySteps}, highest of the logs every " +
                    $"{MemoryFirst} steps {memory.Highest:F0} MiB");
        report.Extra($"rss_after_step_{MemoryFirst}_mib", Math.Round(memory.AtFirst, 1));
        report.Extra($"rss_after_step_{MemorySteps}_mib", Math.Round(memory.AtLast, 1));
        report.Extra($"rss_every_{MemoryFirst}_steps_mib", string.Join(" ", memory.Series));
        var notices = fp32.Notices.Concat(bf16?.Notices ?? []).Distinct().ToList();
        if (notices.Count > 0) report.Extra("trainer_notices", string.Join(" | ", notices));
        report.Extra("peak_rss_mib", Math.Round(Resident.PeakMiB));
        report.Extra("twin_peak_rss_mib", Math.Round(m.Twin.GetProperty("peak_rss_mib").GetDouble()));
    }

    /// <summary>The PyTorch twin's steps of the default mix (reference/pretrain.py) in fp32 on <paramref name="threads"/> threads.</summary>
    static JsonElement Twin(MedformerConfig config, int threads) => PythonReference.WithConfig(config, configFile =>
        PythonReference.Run("pretrain.py", "--threads", threads.ToString(), "--config", configFile,
            "--batch", Batch.ToString(), "--size", Size.ToString(), "--warmup", Warmup.ToString(), "--steps", Timed.ToString(),
            "--batches", Distinct.ToString(), "--mix", string.Join(",", new RunConfig().Objectives.Select(o =>
                FormattableString.Invariant($"{o.Key}={o.Value.Weight}")))));

    sealed record StepTimes(double MedianStep, double MeanStep, long Parameters, double MaskRatio, IReadOnlyList<string> Mix, IReadOnlyList<string> Notices);

    /// <summary>Seconds per trainer step of the default mix: <see cref="Warmup"/> steps, then <see cref="Timed"/> timed ones.</summary>
    static StepTimes Throughput(MedformerConfig config, Precision precision)
    {
        var stamps = new long[Warmup + Timed + 1];
        var run = Train(config, precision, Batch, Warmup + Timed, logEvery: 1, log => stamps[log.Step] = Stopwatch.GetTimestamp());
        var seconds = Enumerable.Range(Warmup + 1, Timed).Select(s => Stopwatch.GetElapsedTime(stamps[s - 1], stamps[s]).TotalSeconds).Order().ToArray();
        double mean = Stopwatch.GetElapsedTime(stamps[Warmup], stamps[^1]).TotalSeconds / Timed;
        return new StepTimes(seconds[Timed / 2], mean, run.Parameters, run.MaskRatio, run.Mix, run.Notices);
    }

    sealed record MemoryProfile(double AtFirst, double AtLast, double Highest, double StepsPerSecond, IReadOnlyList<double> Series)
    {
        public double Growth => AtLast - AtFirst;
    }

    /// <summary>The memory run's precision: the job's default (fp32).</summary>
    static Precision MemoryPrecision => new RunConfig().ParsePrecision("run config");

    /// <summary>Resident memory after step <see cref="MemoryFirst"/> and after step <see cref="MemorySteps"/> of a run in
    /// <see cref="MemoryPrecision"/>.</summary>
    static MemoryProfile Memory(MedformerConfig config)
    {
        var rss = new Dictionary<long, double>();
        var clock = Stopwatch.StartNew();
        Train(config, MemoryPrecision, MemoryBatch, MemorySteps, logEvery: MemoryFirst, log => rss[log.Step] = Resident.CurrentMiB);
        return new MemoryProfile(rss[MemoryFirst], rss[MemorySteps], rss.Values.Max(), MemorySteps / clock.Elapsed.TotalSeconds,
            [.. rss.OrderBy(r => r.Key).Select(r => Math.Round(r.Value, 1))]);
    }

    sealed record TrainRun(long Parameters, double MaskRatio, IReadOnlyList<string> Mix, IReadOnlyList<string> Notices);

    /// <summary>The job's default mix and optimizer settings, <paramref name="steps"/> trainer steps over pre-made batches.</summary>
    static TrainRun Train(MedformerConfig config, Precision precision, int batchSize, long steps, int logEvery, Action<TrainerLog> log)
    {
        var job = new RunConfig();
        Seeding.SeedEverything(job.Seed);
        var batches = MakeBatches(config, job, batchSize);
        string output = Directory.CreateTempSubdirectory("medformer-bench-pretrain-").FullName;
        try
        {
            // As PretrainJob builds the objectives of its default mix; one the twin lacks is an error, not a silent mismatch.
            var unknown = job.Objectives.Keys.FirstOrDefault(k => k is not ("inpainting" or "rotation" or "simclr"));
            if (unknown is not null)
                throw new InvalidOperationException($"the pretraining job's default mix has '{unknown}', which bench/reference/pretrain.py has no twin of");
            var objectives = PretrainJob.Objectives(job, config);
            using var task = new Pretraining(new MedformerModel(config), objectives, job.Momentum);
            var options = PretrainJob.TrainerOptions(job) with
            {
                MaxSteps = steps,
                Precision = precision,
                LogEvery = logEvery,
                CheckpointEvery = 0,  // 0: one checkpoint, after the last step (and its log)
            };
            var notices = new List<string>();
            new Trainer(options, CPU, notices.Add).Fit(task, start => Replay(batches, start), output, log: log);
            double maskRatio = objectives.Select(o => o.Objective).OfType<Inpainting>().Single().MaskRatio;
            return new TrainRun(task.Module.parameters().Sum(p => p.numel()), maskRatio,
                [.. objectives.Select(o => $"{o.Objective.Task} {o.Weight}")], notices);
        }
        finally
        {
            foreach (var batch in batches) batch.Dispose();
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary><see cref="Distinct"/> batches of two views, augmented as the job does, from random images in memory.</summary>
    internal static List<Batch> MakeBatches(MedformerConfig config, RunConfig job, int batchSize)
    {
        using var corpus = new TensorCorpus("bench", rand(Distinct * batchSize, 1, Size, Size), organ: "chest", modality: "xray");
        var source = new LoaderSource(corpus, Transform: PretrainJob.Augmentation(job.Augment, corpus, config), Views: 2);
        var loader = new DataLoader([source], new LoaderOptions(batchSize, job.Seed, Workers: 0));
        return [.. loader.Batches().Take(Distinct)];
    }

    /// <summary>The trainer disposes each batch after its step, so it gets copies, in turn, from batch <paramref name="start"/>.</summary>
    internal static IEnumerable<Batch> Replay(IReadOnlyList<Batch> batches, long start)
    {
        for (long i = start; ; i++)
        {
            var batch = batches[(int)(i % batches.Count)];
            yield return new Batch(i, [.. batch.Views.Select(v => new BatchView(v.Images.clone(), v.Targets?.clone(), v.Coordinates?.clone()))], batch.Metas);
        }
    }

    /// <summary>
    /// Forward FLOPs per sample of each objective, from <see cref="ModelFlops"/>: inpainting tokenizes every patch,
    /// but its encoder's cross-attention reads only the visible tokens (counted on an input with that many tokens)
    /// and its decoder reads the hidden ones back as queries; rotation is one forward and one pooled query; SimCLR
    /// two views, each with one pooled query.
    /// </summary>
    sealed record StepFlops(long Tokens, long Visible, long Hidden, IReadOnlyDictionary<string, double> PerObjective)
    {
        public double PerSample => PerObjective.Values.Sum();

        /// <summary>Forward and backward ≈ 3 × forward.</summary>
        public double Step(int batch) => 3 * PerSample * batch;

        public static StepFlops Of(MedformerConfig config, double maskRatio, IEnumerable<string> mix)
        {
            long[] image = [Size, Size];
            long tokens = ModelFlops.Forward(config, image).Tokens;
            long hidden = (long)Math.Round(maskRatio * tokens, MidpointRounding.ToEven);  // as Losses.RandomMask
            long visible = tokens - hidden;
            var inpainting = ModelFlops.Forward(config, image, queries: hidden);
            double visibleCross = ModelFlops.Forward(config, [config.PatchSize2d, config.PatchSize2d * visible]).EncoderCrossAttention;
            double pooled = ModelFlops.Forward(config, image, queries: 1).Total;
            var each = new Dictionary<string, double>
            {
                ["inpainting"] = inpainting.Tokenizer + visibleCross + inpainting.SelfAttention + inpainting.Decoder,
                ["rotation"] = pooled,
                ["simclr"] = 2 * pooled,
            };
            return new StepFlops(tokens, visible, hidden, mix.ToDictionary(name => name, name => each[name]));
        }
    }
}
