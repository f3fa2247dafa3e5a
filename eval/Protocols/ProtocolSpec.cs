using Medformer.Datasets.Corpora;

namespace Medformer.Eval.Protocols;

/// <summary>
/// Where a run starts: a random initialisation (<see cref="Checkpoint"/> null), a pretrained model folder, or for
/// restoration the <see cref="GaussianFilter"/> baseline, which trains nothing.
/// </summary>
public sealed record Initialisation(string Name, string? Checkpoint)
{
    public static Initialisation Random { get; } = new("random init", null);

    /// <summary>The restoration baseline: the input smoothed by a Gaussian whose σ is chosen on validation (the seed talk's first row).</summary>
    public static Initialisation GaussianFilter { get; } = new("Gaussian filter", null);

    /// <summary>"random", "gaussian" (restoration), a model folder, or NAME=FOLDER (the row's name in the table; default the folder's name).</summary>
    public static Initialisation Parse(string text)
    {
        if (text is "random") return Random;
        if (text is "gaussian") return GaussianFilter;
        int eq = text.IndexOf('=');
        string name = eq > 0 ? text[..eq] : "", folder = eq > 0 ? text[(eq + 1)..] : text;
        if (!Directory.Exists(folder) || !File.Exists(Path.Combine(folder, "config.json")))
            throw new ArgumentException($"--init '{text}': expected random, gaussian (restoration), a model folder (config.json and model.safetensors), or " +
                $"NAME=FOLDER; {folder} is not a model folder");
        if (name.Length == 0) name = Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder)));
        return new Initialisation(name, Path.GetFullPath(folder));
    }
}

/// <summary>One cell of a protocol's table, one run: an initialisation, a fraction of the labels, a seed.</summary>
public sealed record CellKey(string Init, double Fraction, int Seed);

/// <summary>What one run trains on and is chosen on: indices into the data's corpora.</summary>
public sealed record CellPlan(CellKey Key, Initialisation Init, int[] TrainIndices, ICorpus Validation, int[] ValidationIndices);

public enum ProtocolKind
{
    /// <summary>MedMNIST's data-fraction curve: a fraction of the training split, chosen on the validation split.</summary>
    Fractions,
    /// <summary>The seed talk's: the training split halved into training and validation, a fraction of the training half.</summary>
    Halves,
}

/// <summary>
/// An evaluation protocol: which fractions of the labels, how many seeded runs per cell, and how a run's training
/// and validation data are drawn. Every draw is stratified by class and nested (<see cref="FewLabels"/>), so for one
/// seed a larger fraction holds the smaller one's samples.
/// <list type="bullet">
/// <item><see cref="ProtocolKind.Fractions"/> (MedMNIST): 1%, 10%, 100% of the training split, chosen on the
/// validation split (on a data set without one, on a fixed stratified 10% held out of the training split).</item>
/// <item><see cref="ProtocolKind.Halves"/> (the seed talk): each seed splits the training split into halves,
/// training and validation; 20%, 50%, 100% of the training half; six runs.</item>
/// </list>
/// Either way the run is chosen on validation (the step whose validation metric is best) and measured on the test split.
/// </summary>
public sealed record ProtocolSpec(ProtocolKind Kind, IReadOnlyList<double> Fractions, int Seeds)
{
    public static ProtocolSpec MedMnistFractions { get; } = new(ProtocolKind.Fractions, [0.01, 0.1, 1.0], 3);

    public static ProtocolSpec SeedTalkHalves { get; } = new(ProtocolKind.Halves, [0.2, 0.5, 1.0], 6);

    public string Name => Kind == ProtocolKind.Halves ? "halves" : "fractions";

    /// <summary>"fractions" or "halves", with their defaults.</summary>
    public static ProtocolSpec Parse(string name) => name switch
    {
        "fractions" => MedMnistFractions,
        "halves" => SeedTalkHalves,
        _ => throw new ArgumentException($"--protocol '{name}': expected fractions (MedMNIST's 1%, 10%, 100%) or halves (the seed talk's)"),
    };

    public void Validate()
    {
        if (Fractions.Count == 0) throw new ArgumentException("--fractions: a protocol needs at least one fraction");
        foreach (double f in Fractions)
            if (!(f > 0 && f <= 1)) throw new ArgumentException($"--fractions: {f} must be in (0, 1]");
        if (Fractions.Distinct().Count() != Fractions.Count) throw new ArgumentException($"--fractions {string.Join(",", Fractions)}: a fraction repeats");
        if (Seeds < 1) throw new ArgumentException($"--seeds {Seeds} must be at least 1");
    }

    /// <summary>Every cell, seed by seed (so an interrupted run has whole comparisons for its first seeds).</summary>
    public IEnumerable<CellKey> Cells(IReadOnlyList<Initialisation> inits) =>
        from seed in Enumerable.Range(0, Seeds) from fraction in Fractions from init in inits select new CellKey(init.Name, fraction, seed);

    /// <summary>The training indices (into <see cref="EvaluationData.Train"/>) and the validation set of one cell.</summary>
    public CellPlan Plan(EvaluationData data, Initialisation init, CellKey key)
    {
        var strata = data.TrainStrata;
        int[] pool;
        ICorpus validation;
        int[] validationIndices;
        if (Kind == ProtocolKind.Halves)
        {
            (pool, validationIndices) = FewLabels.Split(strata, 0.5, key.Seed);
            validation = data.Train;
        }
        else if (data.Validation is { } split)
        {
            pool = [.. Enumerable.Range(0, strata.Count)];
            (validation, validationIndices) = (split, [.. Enumerable.Range(0, (int)split.Count)]);
        }
        else
        {
            // No validation split: a fixed 10% of the training split, the same for every seed.
            (validationIndices, pool) = FewLabels.Split(strata, 0.1, seed: 0);
            validation = data.Train;
        }
        var picked = FewLabels.Fraction([.. pool.Select(i => strata[i])], key.Fraction, key.Seed);
        return new CellPlan(key, init, [.. picked.Select(i => pool[i])], validation, validationIndices);
    }
}
