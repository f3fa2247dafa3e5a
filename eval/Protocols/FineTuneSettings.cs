using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Medformer.Runtime;

namespace Medformer.Eval.Protocols;

/// <summary>How a protocol's cells fine-tune: the trainer's settings, and how each run's step is chosen.</summary>
/// <param name="Evaluations">Validation checks over the run (every MaxSteps / Evaluations steps, and at the end).</param>
/// <param name="Selection">The validation metric that picks the step; null: the head's (auc for classification,
/// MedMNIST's model selection; dice for segmentation; mse for image-to-image). Classification takes "auc" or "acc",
/// segmentation "dice", image-to-image "mse", "l1" or "ssim".</param>
/// <param name="Roi">Dense heads on images of any size: the training crop and sliding window (<see cref="FineTuneOptions.Roi"/>).</param>
public sealed record FineTuneSettings(
    long MaxSteps = 300,
    double LearningRate = 1e-3,
    int BatchSize = 32,
    int Evaluations = 10,
    Precision Precision = Precision.Bf16,
    Pooling Pooling = Pooling.Flatten,
    string? Selection = null,
    int Workers = 1,
    long[]? Roi = null)
{
    public void Validate()
    {
        if (MaxSteps < 1) throw new ArgumentException($"--max-steps {MaxSteps} must be at least 1");
        if (!(LearningRate > 0)) throw new ArgumentException($"--lr {LearningRate} must be positive");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size {BatchSize} must be at least 1");
        if (Evaluations < 1) throw new ArgumentException($"evaluations {Evaluations} must be at least 1");
        if (Selection is not (null or "auc" or "acc" or "dice" or "mse" or "l1" or "ssim"))
            throw new ArgumentException($"--select '{Selection}': expected auc or acc (classification), dice (segmentation), mse, l1 or ssim (image-to-image)");
        if (Roi is { } roi && (roi.Length is not (2 or 3) || roi.Any(n => n < 1)))
            throw new ArgumentException($"--roi [{string.Join(",", roi)}]: one positive size per spatial axis (2 or 3)");
    }
}
