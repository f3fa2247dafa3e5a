namespace Medformer;

/// <summary>
/// What picks a sample's latent banks: its organ, modality and task (the dimensionality comes from the input's
/// rank). Values outside the config's vocabularies fall back to "other".
/// </summary>
public readonly record struct LatentKey(string Organ, string Modality, string Task)
{
    public static LatentKey Other { get; } = new("other", "other", "other");
}
