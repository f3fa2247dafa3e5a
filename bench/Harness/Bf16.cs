using Medformer.Runtime;

namespace Medformer.Bench;

/// <summary>
/// Whether the benchmarks time bf16 here: only where the CPU runs it in hardware (AVX512-BF16 or AMX), by the same
/// detection the trainer uses. Elsewhere bf16 is emulated, many times slower than fp32: timing it would take most of
/// a benchmark's ten minutes and measure nothing a user would run, so bf16 rows are skipped with this reason.
/// </summary>
public static class Bf16
{
    public static bool Timed => CpuFeatures.HasFastBf16;

    public const string SkipReason =
        "skipped: this CPU has neither AVX512-BF16 nor AMX (or MEDFORMER_FAST_BF16=0), so bf16 would be emulated; the trainer runs bf16 requests in fp32 here";

    /// <summary>Records why bf16 rows are missing, where they are.</summary>
    public static void Note(BenchReport report)
    {
        if (!Timed) report.Extra("bf16", SkipReason);
    }
}
