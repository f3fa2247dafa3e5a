namespace Medformer.Datasets.Corpora;

/// <summary>
/// A finite, indexable set of samples (PyTorch's map-style Dataset). <see cref="Get"/> reads one sample; a corrupt
/// file raises <see cref="InvalidDataException"/> naming the file and the fault, which the loader skips and counts
/// unless strict. Implementations are safe to call from several loader workers at once.
/// </summary>
public interface ICorpus
{
    string Name { get; }

    long Count { get; }

    /// <summary>The sample at <paramref name="index"/> (0 ≤ index &lt; Count); the caller owns its tensors.</summary>
    Sample Get(long index);
}
