using Medformer.Runtime;

namespace Medformer.Training;

/// <summary>What a finished run leaves: where its model and last checkpoint are, and how it went.</summary>
/// <param name="Precision">The precision that ran (<see cref="RequestedPrecision"/> may differ: bf16 falls back to fp32 on a CPU without fast bf16).</param>
public sealed record TrainerResult(string ModelDirectory, string LastCheckpoint, long Steps, double FinalLoss, long SkippedSteps,
    TimeSpan Elapsed, IReadOnlyList<TrainerLog> History, IReadOnlyList<(long Step, IReadOnlyDictionary<string, double> Metrics)> Evaluations,
    Precision Precision, Precision RequestedPrecision);
