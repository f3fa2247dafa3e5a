namespace Medformer.Pretrain.Objectives;

/// <summary>
/// The pretraining objectives by their run-config names: which settings each takes and how it is built, in one
/// table (the run config validates against it, the job builds from it, benchmarks list it).
/// </summary>
public static class ObjectiveRegistry
{
    sealed record Entry(string Name, string[] Settings, Func<ObjectiveSpec, MedformerConfig, Objective> Create, bool MixesViews = false);

    static readonly Entry[] Entries =
    [
        new("inpainting", ["mask_ratio", "normalize_pixels"], (s, m) => new Inpainting(m, s.MaskRatio ?? 0.75, s.NormalizePixels ?? false)),
        new("rotation", [], (_, m) => new Rotation(m.Dim)),
        new("jigsaw", ["grid", "permutations"], (s, m) => new Jigsaw(m.Dim, s.Grid ?? 2, s.Permutations ?? 24)),
        new("simclr", ["temperature", "projection_dim"], (s, m) => new SimClr(m.Dim, s.Temperature ?? 0.2, s.ProjectionDim ?? 128), MixesViews: true),
        new("pixpro", ["threshold", "gamma", "projection_dim", "instance_weight"],
            (s, m) => new PixPro(m.Dim, s.Threshold ?? 0.7, s.Gamma ?? 2, s.ProjectionDim ?? 128, s.InstanceWeight ?? 1.0)),
        new("byol", ["projection_dim"], (s, m) => new Byol(m.Dim, s.ProjectionDim ?? 128)),
        new("barlow", ["lambda", "projection_dim"], (s, m) => new BarlowTwins(m.Dim, s.Lambda ?? 0.005, s.ProjectionDim ?? 256), MixesViews: true),
    ];

    /// <summary>Every objective's name, in the order the README and benchmarks list them.</summary>
    public static IReadOnlyList<string> Names { get; } = [.. Entries.Select(e => e.Name)];

    /// <summary>The run-config settings an objective takes besides its weight; null for an unknown name.</summary>
    public static IReadOnlyList<string>? SettingsOf(string name) => Entries.FirstOrDefault(e => e.Name == name)?.Settings;

    /// <summary>Whether the objective's two views can be BrainFuse mixes (the run config's brainfuse; <see cref="Objective.MixesViews"/>).</summary>
    public static bool MixesViews(string name) => Entries.FirstOrDefault(e => e.Name == name)?.MixesViews ?? false;

    public static Objective Create(string name, ObjectiveSpec spec, MedformerConfig model) =>
        (Entries.FirstOrDefault(e => e.Name == name) ??
            throw new ArgumentException($"objectives.{name}: unknown objective (known: {string.Join(", ", Names)})"))
        .Create(spec, model);
}
