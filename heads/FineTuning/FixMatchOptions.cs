using Medformer.Datasets.Transforms;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// FixMatch (Sohn et al., 2020), semi-supervised fine-tuning: beside the labelled images' loss, each unlabelled
/// image is seen weakly augmented (the fine-tuning augmentation) and strongly augmented; where the model's top
/// probability on the weak view reaches <see cref="Threshold"/>, its class is the label the strong view learns, with
/// weight <see cref="Weight"/> (λ_u). Online: the pseudo-labels improve as the model does, where self-training's
/// are fixed by the teacher. The defaults are the paper's (τ 0.95, λ_u 1, μ 7).
/// </summary>
public sealed record FixMatchOptions
{
    /// <summary>τ: unlabelled images whose top probability on the weak view is below this add no loss.</summary>
    public double Threshold { get; init; } = 0.95;
    /// <summary>λ_u: the unlabelled term's weight against the labelled one.</summary>
    public double Weight { get; init; } = 1;
    /// <summary>μ: unlabelled images per labelled one in each batch (BatchSize labelled, about μ·BatchSize unlabelled).</summary>
    public double UnlabelledRatio { get; init; } = 7;
    /// <summary>
    /// The strong view's augmentation, applied after the weak one (the fine-tuning augmentation); null: <see cref="DefaultStrongAugment"/>.
    /// </summary>
    public ITransform? StrongAugment { get; init; }

    public void Validate()
    {
        if (Threshold is < 0 or > 1 || double.IsNaN(Threshold)) throw new ArgumentException($"FixMatch threshold {Threshold} must be in [0, 1]");
        if (!(Weight > 0) || double.IsInfinity(Weight)) throw new ArgumentException($"FixMatch weight {Weight} must be positive and finite");
        if (!(UnlabelledRatio > 0) || double.IsInfinity(UnlabelledRatio))
            throw new ArgumentException($"FixMatch unlabelled ratio {UnlabelledRatio} must be positive and finite " +
                "(unlabelled images per labelled one in a batch)");
    }

    /// <summary>
    /// A RandAugment-like strong augmentation for grey 2D images and 3D volumes of <paramref name="spatialShape"/>:
    /// an affine warp (rotation ±0.3 rad, scale ±20%, shear ±0.2, shifts up to 1/8 of each side) and contrast
    /// (γ 0.6–1.6) and brightness (×0.7–1.3) changes, each half the time, then Cutout: one box of up to half of each
    /// side filled with 0, always, as FixMatch's.
    /// </summary>
    public static ITransform DefaultStrongAugment(long[] spatialShape) => new Compose([
        new RandAffine(0.5, RotateRange: [0.3], ScaleRange: [0.2], TranslateRange: [.. spatialShape.Select(s => s / 8.0)], ShearRange: [0.2],
            PaddingMode: GridSamplePaddingMode.Zeros),
        new RandAdjustContrast(0.5, 0.6, 1.6),
        new RandScaleIntensity(0.3, 0.5),
        new RandCoarseDropout(1, [1], MaxSpatialSize: [.. spatialShape.Select(s => Math.Max(1, s / 2))], Probability: 1),
    ]);
}
