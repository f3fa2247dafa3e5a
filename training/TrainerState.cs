using System.Text.Json;
using System.Text.Json.Serialization;

namespace Medformer.Training;

/// <summary>
/// trainer.json: where a run stands, enough to resume it exactly. The loader's position is the step times the
/// accumulation (its order is a function of the batch index), and every random draw of a step is seeded from
/// (seed, step), so the step and the seed stand for the RNG states; the rest is the loss scaler and the counters.
/// </summary>
public sealed class TrainerState
{
    public int Format { get; set; } = 1;
    public long Step { get; set; }
    public long Seed { get; set; }
    /// <summary>The run's length and accumulation: the schedule and the loader position depend on them.</summary>
    public long MaxSteps { get; set; }
    public int Accumulation { get; set; } = 1;
    /// <summary>The precision the run trained in (bf16 on a CPU without fast bf16 trains in fp32).</summary>
    public string Precision { get; set; } = "fp32";
    /// <summary>The precision that was asked for, beside the one that ran.</summary>
    public string? RequestedPrecision { get; set; }
    /// <summary>The tracking run (MLflow's run id) this training reports to, so a resumed run continues it.</summary>
    public string? RunId { get; set; }
    public double LearningRate { get; set; }
    public double? LossScale { get; set; }
    public int? LossScaleGrowthTracker { get; set; }
    public long SkippedSteps { get; set; }
    public int NonFiniteInARow { get; set; }
    public double LastLoss { get; set; } = double.NaN;
    public double ElapsedSeconds { get; set; }
    /// <summary>Processes the run was trained on (data parallel); the loader position is per rank.</summary>
    public int WorldSize { get; set; } = 1;
    /// <summary>The next batch index the loader gives (step × accumulation), on each rank.</summary>
    public long LoaderPosition { get; set; }
    /// <summary>Batch adaptation's batch size and recent selected sizes; null when it was off.</summary>
    public BatchAdaptationState? BatchAdaptation { get; set; }

    public static readonly JsonSerializerOptions Json = new()
    {
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        WriteIndented = true,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };
}
