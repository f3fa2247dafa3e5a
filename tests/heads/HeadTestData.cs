using Medformer.Datasets;
using Medformer.Datasets.Corpora;

namespace Medformer.Tests.Heads;

/// <summary>A corpus whose samples carry other labels: the phantom's 10 classes (5 shapes × 2 textures) recast as each task type.</summary>
sealed class Relabelled(ICorpus inner, Func<long[], long[]> relabel, string? name = null) : ICorpus
{
    public string Name => name ?? inner.Name;

    public long Count => inner.Count;

    public Sample Get(long index)
    {
        var sample = inner.Get(index);
        return sample with { Meta = sample.Meta with { Labels = relabel(sample.Meta.Labels) } };
    }

    /// <summary>Phantom class k = shape k/2, texture k%2 (smooth 0, striped 1).</summary>
    public static long[] Binary(long[] labels) => [labels[0] % 2];

    /// <summary>Five grades: the shape.</summary>
    public static long[] Ordinal(long[] labels) => [labels[0] / 2];

    /// <summary>Six 0/1 labels: the shape one-hot, then striped.</summary>
    public static long[] MultiLabel(long[] labels) => [.. Enumerable.Range(0, 5).Select(s => labels[0] / 2 == s ? 1L : 0L), labels[0] % 2];
}
