namespace Medformer.Datasets.Corpora;

/// <summary>
/// Some samples of a corpus under new labels (pseudo-labels, say): sample i is the inner corpus's sample
/// <c>indices[i]</c> with <c>Labels = labels[i]</c>, whatever labels it had (unlabelled images have none).
/// </summary>
public sealed class RelabelledCorpus : ICorpus
{
    readonly ICorpus inner;
    readonly long[] indices;
    readonly long[][] labels;

    public RelabelledCorpus(ICorpus inner, IReadOnlyList<long> indices, IReadOnlyList<long[]> labels, string? name = null)
    {
        if (indices.Count == 0) throw new ArgumentException($"a relabelled subset of corpus '{inner.Name}' needs at least one sample");
        if (labels.Count != indices.Count) throw new ArgumentException($"corpus '{inner.Name}': {labels.Count} label sets for {indices.Count} samples");
        foreach (long i in indices)
            if (i < 0 || i >= inner.Count) throw new ArgumentException($"corpus '{inner.Name}' has {inner.Count} samples; index {i} is outside");
        this.inner = inner;
        this.indices = [.. indices];
        this.labels = [.. labels.Select(l => (long[])l.Clone())];
        Name = name ?? inner.Name;
    }

    /// <summary>Every sample of <paramref name="corpus"/> with no labels (the unlabelled images of semi-supervised fine-tuning).</summary>
    public static RelabelledCorpus WithoutLabels(ICorpus corpus) =>
        new(corpus, [.. Enumerable.Range(0, checked((int)corpus.Count)).Select(i => (long)i)], [.. Enumerable.Repeat(Array.Empty<long>(),
            checked((int)corpus.Count))], $"{corpus.Name}/unlabelled");

    public string Name { get; }

    public long Count => indices.Length;

    public IReadOnlyList<long> Indices => indices;

    /// <summary>Sample i's labels.</summary>
    public IReadOnlyList<long> LabelsOf(long index) => labels[index];

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"corpus '{Name}' has {Count} samples");
        var sample = inner.Get(indices[index]);
        return sample with { Meta = sample.Meta with { Labels = (long[])labels[index].Clone() } };
    }
}
