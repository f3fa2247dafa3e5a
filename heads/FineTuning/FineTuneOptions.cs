using Medformer.Datasets.Transforms;
using Medformer.Runtime;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// How to fine-tune, as plain data; the defaults are the recipe that pays on Fashion-MNIST at 1% of the labels
/// (batch 64, AdamW 1e-3 with weight decay 0.05, 20 warmup steps then cosine to lr/100, bf16 where the CPU has it).
/// </summary>
public sealed record FineTuneOptions
{
    public long MaxSteps { get; init; } = 1000;
    public int BatchSize { get; init; } = 64;
    public double LearningRate { get; init; } = 1e-3;
    /// <summary>The cosine's floor; default lr/100.</summary>
    public double? MinLearningRate { get; init; }
    public long WarmupSteps { get; init; } = 20;
    public double WeightDecay { get; init; } = 0.05;
    public double GradClip { get; init; } = 1.0;
    public Precision Precision { get; init; } = Precision.Bf16;
    public long Seed { get; init; }
    public int LogEvery { get; init; } = 50;
    /// <summary>Steps between validation scores (with a validation corpus); 0: only at the end.</summary>
    public long EvaluateEvery { get; init; }
    /// <summary>
    /// With a validation corpus: the head's validation metric (e.g. "auc", "dice", "mse") whose best check's weights
    /// the tuner keeps and saves (Lightning's ModelCheckpoint(monitor, mode)); null keeps the last step's.
    /// </summary>
    public string? SelectBest { get; init; }
    /// <summary>"max" (the default: higher is better, as for accuracy or Dice) or "min" (lower is better, as for MSE).</summary>
    public string SelectMode { get; init; } = "max";
    /// <summary>
    /// Dense heads on images or volumes of any size: train on random crops of this spatial size (padded with zeros
    /// where an image is smaller; MONAI's SpatialPad + RandSpatialCrop, before <see cref="Augment"/>), and score
    /// validation and test images of another size by sliding windows of it. Null: the samples are already one shape.
    /// </summary>
    public long[]? Roi { get; init; }
    public int Workers { get; init; } = 1;
    /// <summary>Training augmentation (e.g. crops and flips); none by default.</summary>
    public ITransform? Augment { get; init; }
    /// <summary>Where checkpoints and the fine-tuned model (<c>model/</c>) go; null: a temporary folder, removed after.</summary>
    public string? OutputDirectory { get; init; }
    public Device? Device { get; init; }
    /// <summary>Dynamic Batch Adaptation (DBA/EDBA), as in pretraining; off by default.</summary>
    public BatchAdaptationOptions? BatchAdaptation { get; init; }
    /// <summary>Mixup's α: batches mixed with a permutation of themselves by λ ~ Beta(α, α), labels alike (0: off; classification heads).</summary>
    public double Mixup { get; init; }
    /// <summary>
    /// Decay of an exponential moving average of the weights (e.g. 0.999; 0: off): validation scores the average and
    /// the fine-tuned model is the average (timm's ModelEma, as FixMatch evaluates).
    /// </summary>
    public double Ema { get; init; }
    /// <summary>
    /// Continue from the newest checkpoint in <see cref="OutputDirectory"/> (<c>finetune --resume</c>): weights, optimizer,
    /// RNG states, loader position and EMA as they were, so an interrupted run ends as the uninterrupted one would.
    /// </summary>
    public bool Resume { get; init; }
    /// <summary>Steps between checkpoints; 0 writes one at the end (and where the run is interrupted).</summary>
    public long CheckpointEvery { get; init; }

    public TrainerOptions Trainer => new()
    {
        MaxSteps = MaxSteps, LearningRate = LearningRate, MinLearningRate = MinLearningRate ?? LearningRate / 100,
        WarmupSteps = Math.Min(WarmupSteps, MaxSteps / 2), WeightDecay = WeightDecay, GradClip = GradClip, Precision = Precision, Seed = Seed,
        LogEvery = (int)Math.Min(LogEvery, MaxSteps), EvaluateEvery = EvaluateEvery, BatchAdaptation = BatchAdaptation,
        CheckpointEvery = CheckpointEvery,
    };
}
