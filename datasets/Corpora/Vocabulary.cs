namespace Medformer.Datasets.Corpora;

/// <summary>
/// The organ and modality words corpora put in <see cref="SampleMeta"/> (they pick the model's latent banks).
/// Anything outside these lists is "other".
/// </summary>
public static class Vocabulary
{
    public static IReadOnlyList<string> Organs { get; } =
        ["brain", "chest", "breast", "abdomen", "colon", "skin", "retina", "blood", "kidney", "knee", "bone", "lung", "heart", "vessel", "other"];

    public static IReadOnlyList<string> Modalities { get; } =
        ["ct", "mri", "pet", "xray", "ultrasound", "oct", "fundus", "dermatoscopy", "pathology", "microscopy", "other"];

    /// <summary>The task kinds MedMNIST names (its "multi-label, binary-class" is "multi-label" here).</summary>
    public static IReadOnlyList<string> Tasks { get; } = ["multi-class", "multi-label", "binary-class", "ordinal-regression"];
}
