namespace Medformer.Datasets.Transforms;

/// <summary>
/// A transform over several samples at once (subjects mixed into one, as <see cref="BrainFuse"/>). Not an
/// <see cref="ITransform"/>: it takes the parts, typically drawn by the loader from the same corpus, and returns the
/// mix with what a consistency objective needs. Same rules: the parts are never disposed, all randomness comes from
/// <paramref name="rng"/>.
/// </summary>
public interface IMixTransform
{
    MixedSample Mix(IReadOnlyList<Sample> parts, Random rng);
}
