using Medformer.Datasets.Corpora;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// The few-label protocol on a corpus: <see cref="FewLabels.Fraction"/>'s seeded, stratified draw (round(fraction ·
/// class size) of each class, at least one; the draws of one seed nest), as a corpus. Multi-label samples are
/// stratified by their whole label row; samples without class labels (volumes with masks, PET studies) form one
/// stratum.
/// </summary>
public static class LabelFraction
{
    public static ICorpus Draw(ICorpus corpus, double fraction, long seed)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentException($"--fraction {fraction}: must be in (0, 1]");
        if (fraction == 1) return corpus;
        var rows = new string[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            using var sample = corpus.Get(i);
            rows[i] = string.Join(",", sample.Meta.Labels);
        }
        // Each distinct label row is one stratum.
        var strata = rows.Distinct().Order(StringComparer.Ordinal).Select((row, id) => (row, id)).ToDictionary(p => p.row, p => (long)p.id);
        var picked = FewLabels.Fraction([.. rows.Select(row => strata[row])], fraction, seed);
        return new SubsetCorpus(corpus, [.. picked.Select(i => (long)i)], $"{corpus.Name} ({fraction:0.###} of the labels)");
    }

    /// <summary>
    /// The samples of <paramref name="corpus"/> that <see cref="Draw"/> left out (the unlabelled images of the few-label
    /// protocol), or null when it took them all.
    /// </summary>
    public static ICorpus? Rest(ICorpus corpus, ICorpus drawn)
    {
        if (ReferenceEquals(drawn, corpus)) return null;
        if (drawn is not SubsetCorpus subset) throw new ArgumentException($"corpus '{drawn.Name}' is not a draw of '{corpus.Name}'");
        var taken = subset.Indices.ToHashSet();
        var rest = Enumerable.Range(0, (int)corpus.Count).Select(i => (long)i).Where(i => !taken.Contains(i)).ToArray();
        return rest.Length == 0 ? null : new SubsetCorpus(corpus, rest, $"{corpus.Name} (without labels)");
    }
}
