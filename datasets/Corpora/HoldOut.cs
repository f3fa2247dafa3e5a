namespace Medformer.Datasets.Corpora;

/// <summary>A labelled corpus in three parts: what a task trains on, chooses on and is measured on.</summary>
public sealed record CorpusSplits(ICorpus Train, ICorpus Validation, ICorpus Test);

/// <summary>
/// Splits a corpus that has no validation or test split of its own (an MSD task's labelled cases: its imagesTs
/// come without labels; a folder of PET-CT studies) into training, validation and test cases by one fixed draw
/// (<see cref="FewLabels"/> with seed 0): the same cases land in the same part on every run and machine, so test
/// cases are never trained on, whichever command reads the corpus. At least one case in each part.
/// </summary>
public static class HoldOut
{
    public const double DefaultValidation = 0.1, DefaultTest = 0.2;

    public static CorpusSplits Split(ICorpus corpus, double validation = DefaultValidation, double test = DefaultTest)
    {
        if (!(validation > 0 && test > 0 && validation + test < 1))
            throw new ArgumentException($"held-out fractions: validation {validation} and test {test} must be positive and leave cases to train on");
        if (corpus.Count < 3) throw new ArgumentException($"corpus '{corpus.Name}' has {corpus.Count} case(s); training, validation and test need at least 3");
        var none = new long[corpus.Count];
        var (tested, rest) = FewLabels.Split(none, test, seed: 0);
        var (validated, trained) = FewLabels.Split(new long[rest.Length], validation / (1 - test), seed: 1);
        if (trained.Length == 0) (validated, trained) = (validated[..^1], [validated[^1]]);
        if (validated.Length == 0)
            throw new ArgumentException($"corpus '{corpus.Name}' has {corpus.Count} cases: too few to hold out validation and test cases");
        ICorpus Part(IEnumerable<int> indices, string name) => new SubsetCorpus(corpus, [.. indices.Select(i => (long)i)], $"{corpus.Name}/{name}");
        return new CorpusSplits(Part(trained.Select(i => rest[i]), "train"), Part(validated.Select(i => rest[i]), "validation"), Part(tested, "test"));
    }
}
