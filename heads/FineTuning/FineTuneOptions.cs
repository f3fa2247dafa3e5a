using Medformer.Datasets.Transforms;
using Medformer.Training;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// How to fine-tune, as plain data: the trainer's settings (<see cref="TrainerOptions"/>: steps, batch, learning
/// rate and schedule, precision, device, workers, seed, with their one set of defaults) plus what only fine-tuning
/// has. The recipe that pays on Fashion-MNIST at 1% of the labels departs from the trainer's defaults in two
/// settings: 20 warmup steps (at most half the run) and a log line every 50 steps (at most one per run).
/// </summary>
public sealed record FineTuneOptions : TrainerOptions
{
    public FineTuneOptions()
    {
        WarmupSteps = 20;
        LogEvery = 50;
    }

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
    /// <summary>Training augmentation (e.g. crops and flips); none by default.</summary>
    public ITransform? Augment { get; init; }
    /// <summary>Where checkpoints and the fine-tuned model (<c>model/</c>) go; null: a temporary folder, removed after.</summary>
    public string? OutputDirectory { get; init; }
    /// <summary>Mixup's α: batches mixed with a permutation of themselves by λ ~ Beta(α, α), labels alike (0: off; classification heads).</summary>
    public double Mixup { get; init; }
    /// <summary>
    /// Decay of an exponential moving average of the weights (e.g. 0.999; 0: off): validation scores the average and
    /// the fine-tuned model is the average (timm's ModelEma, as FixMatch evaluates).
    /// </summary>
    public double Ema { get; init; }
    /// <summary>BrainFuse: a share of each batch replaced by mixes of K subjects with combined targets, optionally a consistency term (null: off).</summary>
    public BrainFuseOptions? BrainFuse { get; init; }
    /// <summary>
    /// Continue from the newest checkpoint in <see cref="OutputDirectory"/> (<c>finetune --resume</c>): weights, optimizer,
    /// RNG states, loader position and EMA as they were, so an interrupted run ends as the uninterrupted one would.
    /// </summary>
    public bool Resume { get; init; }

    /// <summary>The settings the trainer runs: the warmup capped at half the run and the log cadence at the run's length.</summary>
    public TrainerOptions Trainer => Shared() with
    {
        WarmupSteps = Math.Min(WarmupSteps, MaxSteps / 2), LogEvery = (int)Math.Min(LogEvery, MaxSteps),
    };
}
