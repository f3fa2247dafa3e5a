using Medformer.Heads;
using Medformer.Heads.FineTuning;

namespace Medformer.Eval.Protocols;

/// <summary>
/// How a protocol's cells fine-tune: <see cref="FineTune"/>, the fine-tuning settings (steps, learning rate, batch,
/// precision, workers, a dense head's ROI; each cell sets its own seed, device, log cadence and validation checks),
/// plus what only a protocol has: how many checks choose each run's step, by which metric, and the head's pooling.
/// </summary>
public sealed record FineTuneSettings
{
    /// <summary>The cells' fine-tuning recipe: <see cref="FineTuneOptions"/>' defaults but for 300 steps of batch 32.</summary>
    public static FineTuneOptions Recipe => new() { MaxSteps = 300, BatchSize = 32 };

    public FineTuneOptions FineTune { get; init; } = Recipe;
    /// <summary>Validation checks over the run (every MaxSteps / Evaluations steps, and at the end).</summary>
    public int Evaluations { get; init; } = 10;
    public Pooling Pooling { get; init; } = Pooling.Flatten;
    /// <summary>
    /// The validation metric that picks the step; null: the head's (auc for classification, MedMNIST's model
    /// selection; dice for segmentation; mse for image-to-image). Classification takes "auc" or "acc",
    /// segmentation "dice", image-to-image "mse", "l1" or "ssim".
    /// </summary>
    public string? Selection { get; init; }

    public void Validate()
    {
        FineTune.Validate();
        if (Evaluations < 1) throw new ArgumentException($"evaluations {Evaluations} must be at least 1");
        if (Selection is not (null or "auc" or "acc" or "dice" or "mse" or "l1" or "ssim"))
            throw new ArgumentException($"--select '{Selection}': expected auc or acc (classification), dice (segmentation), mse, l1 or ssim (image-to-image)");
        if (FineTune.Roi is { } roi && (roi.Length is not (2 or 3) || roi.Any(n => n < 1)))
            throw new ArgumentException($"--roi [{string.Join(",", roi)}]: one positive size per spatial axis (2 or 3)");
    }
}
