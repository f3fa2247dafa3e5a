using Medformer.Runtime;

namespace Medformer.Datasets;

/// <summary>
/// What travels with a sample from its file to the loss: where it came from (corpus, source file, index, so every
/// error can name it), what it shows (organ, modality: they pick the model's latent banks), its geometry, and its
/// labels. Vocabularies are free strings; the model maps unknown ones to "other".
/// </summary>
/// <param name="Corpus">The corpus's name, e.g. "pathmnist" or "phantom2d".</param>
/// <param name="Source">The file the sample was read from (with the member, e.g. "x.npz:train_images[17]").</param>
/// <param name="Index">The sample's index in its corpus.</param>
/// <param name="Organ">e.g. "chest", "brain", "abdomen"; "other" when unknown.</param>
/// <param name="Modality">e.g. "ct", "mri", "xray", "pathology"; "other" when unknown.</param>
/// <param name="Dimensionality">An image [C,H,W] or a volume [C,D,H,W].</param>
/// <param name="Spacing">Millimetres per pixel or voxel along each spatial axis, slowest first (H,W or D,H,W).</param>
/// <param name="Labels">Class indices: one entry (multi-class, binary, ordinal) or one 0/1 entry per class
/// (multi-label); empty when unlabelled.</param>
public sealed record SampleMeta(
    string Corpus,
    string Source,
    long Index,
    string Organ,
    string Modality,
    Dimensionality Dimensionality,
    double[] Spacing,
    long[] Labels)
{
    public int SpatialAxes => Dimensionality.SpatialAxes;

    public override string ToString() => $"{Corpus}[{Index}] ({Source})";
}
