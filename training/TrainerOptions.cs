using Medformer.Runtime;

namespace Medformer.Training;

/// <summary>
/// How the trainer optimises, as plain data: AdamW (β1, β2, weight decay on matrices only), linear warmup then
/// cosine decay to <see cref="MinLearningRate"/>, gradient clipping and accumulation, the precision policy, the
/// NaN/Inf guard, logging and checkpoint cadence. <see cref="Seed"/> fixes every random draw of the run.
/// </summary>
public sealed record TrainerOptions
{
    public long MaxSteps { get; init; } = 1000;
    public double LearningRate { get; init; } = 1e-3;
    public double MinLearningRate { get; init; } = 1e-5;
    public long WarmupSteps { get; init; } = 100;
    public double WeightDecay { get; init; } = 0.05;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    /// <summary>Max global gradient norm; 0 turns clipping off.</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Micro-batches whose gradients add up to one optimizer step.</summary>
    public int Accumulation { get; init; } = 1;
    public Precision Precision { get; init; } = Precision.Bf16;
    public long Seed { get; init; }
    public int LogEvery { get; init; } = 10;
    /// <summary>Steps between checkpoints; 0 writes one only at the end.</summary>
    public long CheckpointEvery { get; init; }
    /// <summary>Checkpoints kept; older ones are removed once a newer one is whole.</summary>
    public int KeepCheckpoints { get; init; } = 2;
    /// <summary>Steps in a row with a non-finite loss or gradient before the run stops.</summary>
    public int MaxNonFiniteInARow { get; init; } = 20;
    /// <summary>Steps between evaluation hooks; 0 turns them off.</summary>
    public long EvaluateEvery { get; init; }
    /// <summary>Dynamic Batch Adaptation (DBA/EDBA); null or strategy none: off. The loader's batches must hold max_batch samples.</summary>
    public BatchAdaptationOptions? BatchAdaptation { get; init; }
    /// <summary>The tracking run this training reports to (MLflow's run id), kept in trainer.json; null: none.</summary>
    public string? RunId { get; init; }

    public void Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new ArgumentException(what);
        }
        Require(MaxSteps > 0, $"max_steps {MaxSteps} must be positive");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"lr {LearningRate} must be positive");
        Require(MinLearningRate >= 0 && MinLearningRate <= LearningRate, $"min_lr {MinLearningRate} must be in [0, lr]");
        Require(WarmupSteps >= 0, $"warmup_steps {WarmupSteps} must not be negative");
        Require(WeightDecay >= 0, $"weight_decay {WeightDecay} must not be negative");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas ({Beta1}, {Beta2}) must be in [0, 1)");
        Require(GradClip >= 0, $"grad_clip {GradClip} must not be negative");
        Require(Accumulation >= 1, $"accumulation {Accumulation} must be at least 1");
        Require(LogEvery >= 1, $"log_every {LogEvery} must be at least 1");
        Require(CheckpointEvery >= 0 && EvaluateEvery >= 0, "checkpoint_every and evaluate_every must not be negative");
        Require(KeepCheckpoints >= 1, $"keep_checkpoints {KeepCheckpoints} must be at least 1");
        Require(MaxNonFiniteInARow >= 1, $"max_non_finite_in_a_row {MaxNonFiniteInARow} must be at least 1");
        if (BatchAdaptation is { Enabled: true } adaptation)
        {
            adaptation.Validate();
            Require(Accumulation == 1, $"batch_adaptation selects within one step's batch: it needs accumulation 1, not {Accumulation}");
        }
    }

    /// <summary>Linear warmup from 0 to the peak, then cosine decay to the minimum at <see cref="MaxSteps"/>.</summary>
    public double LearningRateAt(long step)
    {
        if (step < WarmupSteps) return LearningRate * (step + 1) / WarmupSteps;
        double progress = MaxSteps <= WarmupSteps ? 1 : Math.Min(1.0, (double)(step - WarmupSteps) / (MaxSteps - WarmupSteps));
        return MinLearningRate + 0.5 * (LearningRate - MinLearningRate) * (1 + Math.Cos(Math.PI * progress));
    }
}
