namespace Medformer.Datasets.Corpora;

/// <summary>
/// The samples of another corpus at the given indices, in that order (PyTorch's Subset): a few-label draw, a
/// validation half. Samples keep their meta (the index and source of the corpus they come from).
/// </summary>
public sealed class SubsetCorpus : ICorpus
{
    readonly ICorpus corpus;
    readonly long[] indices;

    public SubsetCorpus(ICorpus corpus, IReadOnlyList<int> indices, string? name = null)
    {
        foreach (int i in indices)
            if (i < 0 || i >= corpus.Count) throw new ArgumentException($"corpus '{corpus.Name}' has {corpus.Count} samples: index {i} is outside it");
        this.corpus = corpus;
        this.indices = [.. indices.Select(i => (long)i)];
        Name = name ?? corpus.Name;
    }

    public string Name { get; }

    public long Count => indices.Length;

    public Sample Get(long index) => index >= 0 && index < indices.Length
        ? corpus.Get(indices[index])
        : throw new ArgumentOutOfRangeException(nameof(index), index, $"subset '{Name}' has {indices.Length} samples");
}
