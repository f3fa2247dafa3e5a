using Medformer.Datasets.Corpora;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>
/// The few-label protocol: a seeded draw of a fraction of a labelled corpus, stratified by class (round(fraction ·
/// class size) of each class, at least one), as the pretraining-pays experiments draw it. Multi-label samples are
/// stratified by their whole label row.
/// </summary>
public static class LabelFraction
{
    public static ICorpus Draw(ICorpus corpus, double fraction, long seed)
    {
        if (!(fraction > 0 && fraction <= 1)) throw new ArgumentException($"--fraction {fraction}: must be in (0, 1]");
        if (fraction == 1) return corpus;
        var labels = new string[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            using var sample = corpus.Get(i);
            if (sample.Meta.Labels.Length == 0) throw new ArgumentException($"{sample.Meta}: unlabelled; a label fraction needs labels");
            labels[i] = string.Join(",", sample.Meta.Labels);
        }
        var random = Seeding.Random("label-fraction", seed);
        var picked = labels.Select((label, index) => (label, index: (long)index)).GroupBy(p => p.label).OrderBy(g => g.Key, StringComparer.Ordinal)
            .SelectMany(g =>
            {
                var members = g.Select(p => p.index).ToArray();
                random.Shuffle(members);
                return members.Take(Math.Max(1, (int)Math.Round(members.Length * fraction)));
            }).Order().ToList();
        return new SubsetCorpus(corpus, picked, $"{corpus.Name} ({fraction:0.###} of the labels)");
    }
}
