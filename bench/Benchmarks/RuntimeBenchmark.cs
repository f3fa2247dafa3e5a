using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run runtime</c>: (a) fp32 and bf16 GEMM rates, (b) the cost of one tiny op per call, (c) a
/// transformer block's training step in fp32 and under the bf16 policy, each next to Debian's PyTorch 1.13.
/// </summary>
public static class RuntimeBenchmark
{
    const int GemmSize = 2048;
    const int TinyOpCalls = 100_000;

    public static BenchReport Run(BenchOptions options)
    {
        string[] args = ["--threads", options.Threads.ToString(), "--gemm", GemmSize.ToString(), "--calls", TinyOpCalls.ToString()];
        var reference = PythonReference.Run("runtime.py", Bf16.Timed ? args : [.. args, "--no-bf16"]);
        var report = new BenchReport("runtime");

        double fp32Gemm = GemmRate(ScalarType.Float32);
        report.Add(new BenchRow($"fp32 GEMM {GemmSize}²", fp32Gemm, reference.GetProperty("gemm_fp32_gflops").GetDouble(), "GFLOP/s"));
        if (Bf16.Timed)
            report.Add(new BenchRow($"bf16 GEMM {GemmSize}²", GemmRate(ScalarType.BFloat16), reference.GetProperty("gemm_bf16_gflops").GetDouble(), "GFLOP/s"));

        report.Add(new BenchRow("tiny op (add_, 16 floats)", TinyOpMicroseconds(), reference.GetProperty("tiny_op_us").GetDouble(), "µs/call",
            HigherIsBetter: false));

        var fp32 = TransformerBlock.TimeStep(Precision.Fp32);
        double referenceStep = reference.GetProperty("block_step_fp32_s").GetDouble();
        var headline = report.Add(new BenchRow("block step fp32", 1 / fp32.Median, 1 / referenceStep, "steps/s"));
        if (Bf16.Timed)
        {
            var bf16 = TransformerBlock.TimeStep(Precision.Bf16);
            var allBf16 = TransformerBlock.TimeStepAllBf16();
            report.Add(new BenchRow("block step bf16 policy", 1 / bf16.Median, 1 / referenceStep, "steps/s"));
            report.Add(new BenchRow("block step all-bf16 cast", 1 / allBf16.Median, 1 / referenceStep, "steps/s"));
            report.Extra("bf16_policy_over_our_fp32", Math.Round(fp32.Median / bf16.Median, 3));
            report.Extra("all_bf16_over_our_fp32", Math.Round(fp32.Median / allBf16.Median, 3));
        }
        report.Headline(headline);
        Bf16.Note(report);
        report.Extra("block", "d=256, 64 tokens, batch 64, 4 heads, MLP 4x, AdamW; PyTorch 1.13 writes attention out (no SDPA in 1.13)");
        report.Extra("peak_rss_mib", Math.Round(Resident.PeakMiB));
        report.Extra("reference_peak_rss_mib", Math.Round(reference.GetProperty("peak_rss_mib").GetDouble()));
        return report;
    }

    /// <summary>GFLOP/s of a 2048² matmul in <paramref name="dtype"/>: the ceiling our FLOP counts are measured against.</summary>
    public static double GemmRate(ScalarType dtype)
    {
        using var a = randn(GemmSize, GemmSize).to(dtype);
        using var b = randn(GemmSize, GemmSize).to(dtype);
        var timing = Timing.Measure(() => { using var c = a.mm(b); }, warmup: 2, repeats: 7);
        return 2.0 * GemmSize * GemmSize * GemmSize / timing.Median / 1e9;
    }

    static double TinyOpMicroseconds()
    {
        using var a = zeros(16);
        using var b = ones(16);
        var timing = Timing.Measure(() =>
        {
            for (int i = 0; i < TinyOpCalls; i++) a.add_(b);
        }, warmup: 1, repeats: 5);
        return timing.Median / TinyOpCalls * 1e6;
    }
}
