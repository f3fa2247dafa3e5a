using Medformer.Bench.Reference;
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run model</c>: training steps of Medformer <c>small</c> (batch 64, 28×28, AdamW, a linear head on the
/// mean latent with cross-entropy) in fp32 and bf16, next to the PyTorch twin (reference/model.py) in fp32 on
/// the same threads, and next to the same model written plainly on TorchSharp (reference/PlainTwin.cs) in fp32;
/// model-FLOP utilisation against the GEMM rates measured in the same run; resident memory.
/// </summary>
public static class ModelBenchmark
{
    const int Batch = 64, Size = 28, Classes = 10, Steps = 8;
    internal const int BatchSize = Batch;
    static readonly string[] Organs = ["chest", "brain", "blood", "skin"];

    public static BenchReport Run(BenchOptions options)
    {
        var config = MedformerConfig.Small;
        string configFile = Path.Combine(Path.GetTempPath(), $"medformer-bench-{Guid.NewGuid():N}.json");
        File.WriteAllText(configFile, config.ToJson());
        var reference = PythonReference.Run("model.py", "--threads", options.Threads.ToString(), "--config", configFile,
            "--batch", Batch.ToString(), "--size", Size.ToString(), "--steps", Steps.ToString());
        File.Delete(configFile);

        double stepFlops = 3 * ModelFlops.Forward(config, [Size, Size]).Total * Batch;  // forward + backward ≈ 3 × forward
        double fp32Gemm = RuntimeBenchmark.GemmRate(ScalarType.Float32);
        var (fp32, fp32Steady, parameters) = TimeSteps(config, Precision.Fp32);
        var plain = TimePlainTwin(config);
        double twin = reference.GetProperty("step_s").GetDouble();

        var report = new BenchReport("model");
        var headline = report.Add(new BenchRow("small step fp32", Batch / fp32.Median, Batch / twin, "samples/s"));
        report.Headline(headline);
        // The reference column of this row is the plain TorchSharp twin (reference/PlainTwin.cs), not PyTorch.
        report.Add(new BenchRow("small step fp32 vs plain TorchSharp twin", Batch / fp32.Median, Batch / plain.Median, "samples/s"));
        report.Extra("plain_twin_mfu_fp32_of_fp32_gemm", Math.Round(stepFlops / plain.Median / 1e9 / fp32Gemm, 3));
        report.Extra("parameters", parameters);
        report.Extra("step_gflop", Math.Round(stepFlops / 1e9, 2));
        report.Extra("fp32_gemm_gflops", Math.Round(fp32Gemm));
        report.Extra("mfu_fp32_of_fp32_gemm", Math.Round(stepFlops / fp32.Median / 1e9 / fp32Gemm, 3));
        report.Extra("twin_mfu_fp32_of_our_fp32_gemm", Math.Round(stepFlops / twin / 1e9 / fp32Gemm, 3));
        report.Extra("steady_rss_growth_mib_fp32", Math.Round(fp32Steady.RssMiB, 1));
        if (Bf16.Timed)
        {
            double bf16Gemm = RuntimeBenchmark.GemmRate(ScalarType.BFloat16);
            var (bf16, bf16Steady, _) = TimeSteps(config, Precision.Bf16);
            report.Add(new BenchRow("small step bf16", Batch / bf16.Median, Batch / twin, "samples/s"));
            report.Extra("bf16_gemm_gflops", Math.Round(bf16Gemm));
            report.Extra("mfu_bf16_of_bf16_gemm", Math.Round(stepFlops / bf16.Median / 1e9 / bf16Gemm, 3));
            report.Extra("bf16_over_twin_fp32", Math.Round(twin / bf16.Median, 2));
            report.Extra("steady_rss_growth_mib_bf16", Math.Round(bf16Steady.RssMiB, 1));
            report.Extra("steady_growth_bf16", bf16Steady.ToString());
        }
        Bf16.Note(report);
        // Where the growth goes: with live tensors and malloc's bytes in use flat, it is freed memory glibc keeps in its
        // per-thread arenas (it falls back when malloc trims); a leak would show as tensors or bytes in use.
        report.Extra("steady_growth_fp32", fp32Steady.ToString());
        report.Extra("peak_rss_mib", Math.Round(Resident.PeakMiB));
        report.Extra("twin_peak_rss_mib", Math.Round(reference.GetProperty("peak_rss_mib").GetDouble()));
        return report;
    }

    /// <summary>Step timing, and how much resident memory grew between the first and the second half of the steps.</summary>
    /// <summary>How resident memory changed over the steady steps, and what glibc's heap and the live tensors say of it.</summary>
    internal sealed record Growth(double RssMiB, double InUseMiB, double HeldFreeMiB, long LiveTensors)
    {
        public override string ToString() =>
            $"RSS {RssMiB:+0.0;-0.0} MiB = malloc in use {InUseMiB:+0.0;-0.0} MiB + freed but held by malloc's arenas {HeldFreeMiB:+0.0;-0.0} MiB (+ pages touched outside malloc); live tensors {LiveTensors:+0;-0}";
    }

    internal static (Timing Timing, Growth Steady, long Parameters) TimeSteps(MedformerConfig config, Precision precision)
    {
        Seeding.SeedEverything(0);
        using var classifier = new Classifier(config, Classes);
        using var policy = MixedPrecision.Create(classifier, precision, CPU);
        using var optimizer = optim.AdamW(policy.MasterParameters, lr: 1e-4);
        using var images = randn(Batch, 1, Size, Size);
        using var input = policy.Cast(images);
        using var labels = randint(0, Classes, [Batch]);
        var keys = Enumerable.Range(0, Batch).Select(i => new LatentKey(Organs[i % Organs.Length], "other", "classification")).ToArray();
        void Step() => Scope.Run(() =>
        {
            var logits = classifier.forward(input, keys);
            policy.Backward(MixedPrecision.Loss(logits, labels, (o, t) => F.cross_entropy(o, t.to(ScalarType.Int64))));
            policy.Step(optimizer);
            policy.ZeroGrad(optimizer);
        });
        var timing = Timing.Measure(Step, warmup: 3, repeats: Steps);
        double before = Resident.CurrentMiB;
        var (inUse, held) = Malloc.Now();
        long live = TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount;
        for (int i = 0; i < Steps; i++) Step();
        var (inUseAfter, heldAfter) = Malloc.Now();
        var growth = new Growth(Resident.CurrentMiB - before, inUseAfter - inUse, heldAfter - held,
            TorchSharp.DisposeScopeManager.Statistics.ThreadTotalLiveCount - live);
        return (timing, growth, classifier.Model.ParameterCount());
    }

    /// <summary>The plain twin's steps as a TorchSharp user writes them: forward, loss, backward, AdamW, in one DisposeScope.</summary>
    static Timing TimePlainTwin(MedformerConfig config)
    {
        Seeding.SeedEverything(0);
        using var model = new PlainTwin(config, Organs.Length);
        using var head = nn.Linear(config.Dim, Classes);
        using var optimizer = optim.AdamW([.. model.parameters(), .. head.parameters()], lr: 1e-4);
        using var images = randn(Batch, 1, Size, Size);
        using var labels = randint(0, Classes, [Batch]);
        long[] organ = [.. Enumerable.Range(0, Batch).Select(i => (long)(i % Organs.Length))];
        void Step()
        {
            using var scope = NewDisposeScope();
            F.cross_entropy(head.call(model.call(images, organ).mean([1])), labels).backward();
            optimizer.step();
            optimizer.zero_grad();
        }
        return Timing.Measure(Step, warmup: 3, repeats: Steps);
    }

    /// <summary>Medformer and a linear head on the mean latent (twin: the head in reference/model.py).</summary>
    sealed class Classifier : nn.Module<Tensor, IReadOnlyList<LatentKey>, Tensor>
    {
        private readonly MedformerModel model;
        private readonly Linear head;

        public Classifier(MedformerConfig config, int classes) : base(nameof(Classifier))
        {
            model = new MedformerModel(config);
            head = nn.Linear(config.Dim, classes);
            RegisterComponents();
        }

        public MedformerModel Model => model;

        public override Tensor forward(Tensor images, IReadOnlyList<LatentKey> keys)
        {
            using var scope = NewDisposeScope();
            return scope.MoveToOuter(head.call(model.forward(images, keys).mean([1])));
        }
    }
}
