using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// How a model trains, as plain data: the one settings type every job shares (pretraining builds it from its run
/// config, fine-tuning's <c>FineTuneOptions</c> and evaluation's <c>FineTuneSettings</c> extend or hold it), and the
/// one place its defaults are set and documented: 1000 steps of batch 64, AdamW (lr 1e-3, β 0.9/0.95, weight decay
/// 0.05 on matrices only) with 100 linear warmup steps then cosine decay to lr/100, gradient clipping at norm 1, bf16
/// where the device runs it fast, one loader worker, the default device, a log line every 10 steps. A job's recipe
/// that departs from a default says so where it is built (fine-tuning: 20 warmup steps, logs every 50; evaluation's
/// cells: 300 steps of batch 32). <see cref="Seed"/> fixes every random draw of the run.
/// </summary>
/// <remarks>Not sealed: fine-tuning's options derive from it, so every shared setting has one name and one default.</remarks>
public record TrainerOptions
{
    public long MaxSteps { get; init; } = 1000;
    /// <summary>Samples per step: what the job's loader gives (the trainer takes batches as they come).</summary>
    public int BatchSize { get; init; } = 64;
    /// <summary>The peak learning rate, reached after the warmup.</summary>
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>The cosine's floor; null: lr/100 (<see cref="MinLearningRateOrDefault"/>).</summary>
    public double? MinLearningRate { get; init; }
    public long WarmupSteps { get; init; } = 100;
    public double WeightDecay { get; init; } = 0.05;
    public double Beta1 { get; init; } = 0.9;
    public double Beta2 { get; init; } = 0.95;
    /// <summary>Max global gradient norm; 0 turns clipping off.</summary>
    public double GradClip { get; init; } = 1.0;
    /// <summary>Micro-batches whose gradients add up to one optimizer step.</summary>
    public int Accumulation { get; init; } = 1;
    /// <summary>
    /// The requested precision; bf16 runs in fp32 on a CPU without fast bf16 (MixedPrecision.Resolve). fp32 by default, as
    /// PyTorch and Lightning ("32-true"): on a CPU bf16 pays from <c>small</c> up, and the default job's <c>tiny</c> pretrained
    /// 600 steps in 44 s in fp32 against 62 s in bf16 even with AVX512-BF16 (d=64 leaves too little matmul work to repay the casts).
    /// </summary>
    public Precision Precision { get; init; } = Precision.Fp32;
    /// <summary>Where the run trains; null: <see cref="DeviceSpec.Resolve"/>'s default, the CPU (fine-tuning: where the model is).</summary>
    public Device? Device { get; init; }
    /// <summary>The loader's background workers (0: batches are built on the training thread).</summary>
    public int Workers { get; init; } = 1;
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

    /// <summary>These settings alone, as a plain <see cref="TrainerOptions"/> (of a derived job's options).</summary>
    public TrainerOptions Shared() => new(this);

    /// <summary><see cref="MinLearningRate"/>, or lr/100 where it is not set.</summary>
    public double MinLearningRateOrDefault => MinLearningRate ?? LearningRate / 100;

    public void Validate()
    {
        void Require(bool ok, string what)
        {
            if (!ok) throw new ArgumentException(what);
        }
        Require(MaxSteps > 0, $"max_steps {MaxSteps} must be positive");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), $"lr {LearningRate} must be positive");
        Require(MinLearningRateOrDefault >= 0 && MinLearningRateOrDefault <= LearningRate, $"min_lr {MinLearningRateOrDefault} must be in [0, lr]");
        Require(WarmupSteps >= 0, $"warmup_steps {WarmupSteps} must not be negative");
        Require(WeightDecay >= 0, $"weight_decay {WeightDecay} must not be negative");
        Require(Beta1 is >= 0 and < 1 && Beta2 is >= 0 and < 1, $"betas ({Beta1}, {Beta2}) must be in [0, 1)");
        Require(GradClip >= 0, $"grad_clip {GradClip} must not be negative");
        Require(BatchSize >= 1, $"batch_size {BatchSize} must be at least 1");
        Require(Workers >= 0, $"workers {Workers} must not be negative");
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
        double floor = MinLearningRateOrDefault;
        return floor + 0.5 * (LearningRate - floor) * (1 + Math.Cos(Math.PI * progress));
    }
}
