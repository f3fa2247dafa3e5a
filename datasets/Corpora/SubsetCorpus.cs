namespace Medformer.Datasets.Corpora;

/// <summary>Some samples of a corpus, by index (PyTorch's Subset): sample i is the inner corpus's sample <c>indices[i]</c>.</summary>
public sealed class SubsetCorpus : ICorpus
{
    readonly ICorpus inner;
    readonly long[] indices;

    public SubsetCorpus(ICorpus inner, IReadOnlyList<long> indices, string? name = null)
    {
        if (indices.Count == 0) throw new ArgumentException($"a subset of corpus '{inner.Name}' needs at least one sample");
        foreach (long i in indices)
            if (i < 0 || i >= inner.Count) throw new ArgumentException($"corpus '{inner.Name}' has {inner.Count} samples; index {i} is outside");
        this.inner = inner;
        this.indices = [.. indices];
        Name = name ?? inner.Name;
    }

    public string Name { get; }

    public long Count => indices.Length;

    public IReadOnlyList<long> Indices => indices;

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"subset '{Name}' has {Count} samples");
        return inner.Get(indices[index]);
    }
}
