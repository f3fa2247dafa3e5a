using Medformer.Pretrain.Objectives;
using Medformer.Datasets.Corpora;
using Medformer.Runtime;
using Medformer.Training;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Medformer.Pretrain;

/// <summary>
/// A pretraining run as plain data: a YAML or JSON file (JSON is YAML) with snake_case keys. Every key is checked:
/// an unknown one, a wrong type or a value out of range is an error naming the file, the key and, for YAML, the line.
/// Immutable once read: the command line's values make a new config (<see cref="PretrainJob.ApplyOverrides"/>, with
/// <c>with</c>), the one the job runs and records.
/// <code>
/// model: tiny                      # a preset or a config.json
/// corpora:
///   - data: phantom:2d             # the data spec finetune --task and evaluate --task take (docs/data.md)
///   - phantom: 2d                  # the same, as its own key
///   - medmnist: ~/data/pathmnist.npz
///     weight: 2
/// objectives:
///   inpainting: { weight: 1, mask_ratio: 0.75 }
///   simclr: { weight: 0.5 }
/// optimizer: { lr: 1.0e-3, weight_decay: 0.05 }
/// schedule: { max_steps: 600, warmup_steps: 50 }
/// batch: { size: 64, workers: 2 }
/// precision: bf16
/// batch_adaptation: { strategy: gradient_norm, scope: last_layer, min_batch: 16 }   # DBA/EDBA; off by default
/// brainfuse: { parts: 2, weights: smooth, share: 0.5, consistency: 0.1 }   # mixes as the views of barlow/simclr; off by default
/// </code>
/// </summary>
public sealed record RunConfig
{
    public string Model { get; init; } = "tiny";
    public List<CorpusEntry> Corpora { get; init; } = [new() { Phantom = "2d" }];
    public Dictionary<string, ObjectiveSpec> Objectives { get; init; } = new()
    {
        // Rotation is left out: the phantom's shapes lie at random angles, so its turn cannot be told (ln 4 throughout).
        ["inpainting"] = new() { Weight = 1.0 },
        ["simclr"] = new() { Weight = 0.5 },
    };
    public OptimizerSpec Optimizer { get; init; } = new();
    public ScheduleSpec Schedule { get; init; } = new();
    public BatchSpec Batch { get; init; } = new();
    public AugmentSpec Augment { get; init; } = new();
    public BatchAdaptationSpec? BatchAdaptation { get; init; }
    /// <summary>BrainFuse mixes as the views of the instance objectives (<see cref="BrainFuseSpec"/>); off by default.</summary>
    public BrainFuseSpec? Brainfuse { get; init; }
    /// <summary>The requested precision, by default the trainer's (<see cref="TrainerOptions.Precision"/>: fp32).</summary>
    public string Precision { get; init; } = new TrainerOptions().Precision.Name();
    public long Seed { get; init; }
    public double Momentum { get; init; } = 0.99;
    public int LogEvery { get; init; } = 10;
    public long CheckpointEvery { get; init; } = 200;
    public bool Strict { get; init; }
    public string? Device { get; init; }

    public static IReadOnlyList<string> ObjectiveNames => ObjectiveRegistry.Names;

    public static RunConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"--config '{path}': no such file (and not a preset: tiny, small, base, large)");
        return Parse(File.ReadAllText(path), path);
    }

    public static RunConfig Parse(string text, string source)
    {
        var deserializer = new DeserializerBuilder().WithNamingConvention(UnderscoredNamingConvention.Instance).Build();
        RunConfig config;
        try
        {
            config = deserializer.Deserialize<RunConfig?>(text) ?? new RunConfig();
        }
        catch (YamlException e)
        {
            string where = e.Start.Line > 0 ? $" (line {e.Start.Line})" : "";
            string reason = (e.InnerException?.Message ?? e.Message).Split('\n')[0];
            throw new ArgumentException($"{source}{where}: {Explain(reason)}", e);
        }
        config.Validate(source);
        return config;
    }

    // YamlDotNet says "Property 'lrr' not found on type 'Medformer.Pretrain.OptimizerSpec'."; a user needs the key's place.
    static string Explain(string reason)
    {
        const string notFound = "not found on type '";
        int at = reason.IndexOf(notFound, StringComparison.Ordinal);
        if (at < 0) return reason;
        string type = reason[(at + notFound.Length)..].TrimEnd('.', '\'').Split('.')[^1];
        string section = type switch
        {
            nameof(RunConfig) => "the top level",
            nameof(OptimizerSpec) => "optimizer",
            nameof(ScheduleSpec) => "schedule",
            nameof(BatchSpec) => "batch",
            nameof(AugmentSpec) => "augment",
            nameof(BatchAdaptationSpec) => "batch_adaptation",
            nameof(BrainFuseSpec) => "brainfuse",
            nameof(CorpusEntry) => "a corpus entry",
            nameof(ObjectiveSpec) => "an objective",
            _ => type,
        };
        return reason[..at].Replace("Property", "unknown key").TrimEnd() + $" in {section}";
    }

    public Precision ParsePrecision(string source) => PrecisionNames.Parse(Precision, $"{source}: precision");

    public void Validate(string source)
    {
        void Require(bool ok, string key, string what)
        {
            if (!ok) throw new ArgumentException($"{source}: {key}: {what}");
        }
        Require(!string.IsNullOrWhiteSpace(Model), "model", "a preset (tiny, small, base, large) or a config.json");
        Require(Corpora.Count > 0, "corpora", "name at least one corpus");
        for (int i = 0; i < Corpora.Count; i++) Corpora[i].Validate($"{source}: corpora[{i}]");
        Require(Objectives.Count > 0, "objectives", $"name at least one of {string.Join(", ", ObjectiveNames)}");
        foreach (var (name, spec) in Objectives)
        {
            Require(ObjectiveNames.Contains(name), $"objectives.{name}", $"unknown objective (known: {string.Join(", ", ObjectiveNames)})");
            (spec ?? new ObjectiveSpec()).Validate(name, $"{source}: objectives.{name}");
        }
        ParsePrecision(source);
        Require(Optimizer.Lr > 0, "optimizer.lr", $"{Optimizer.Lr} must be positive");
        Require(Optimizer.MinLr >= 0 && Optimizer.MinLr <= Optimizer.Lr, "optimizer.min_lr", $"{Optimizer.MinLr} must be in [0, lr]");
        Require(Optimizer.WeightDecay >= 0, "optimizer.weight_decay", "must not be negative");
        Require(Optimizer.Betas.Count == 2 && Optimizer.Betas.All(b => b is >= 0 and < 1), "optimizer.betas", "two numbers in [0, 1)");
        Require(Optimizer.GradClip >= 0, "optimizer.grad_clip", "must not be negative");
        Require(Schedule.MaxSteps > 0, "schedule.max_steps", $"{Schedule.MaxSteps} must be positive");
        Require(Schedule.WarmupSteps >= 0, "schedule.warmup_steps", "must not be negative");
        Require(Batch.Size > 0, "batch.size", $"{Batch.Size} must be positive");
        Require(Batch.Accumulation > 0, "batch.accumulation", "must be positive");
        Require(Batch.Workers >= 0, "batch.workers", "must not be negative");
        Require(Augment.ImageSize > 0 && Augment.VolumeSize > 0, "augment.image_size / volume_size", "must be positive");
        Require(Augment.MinScale is > 0 and <= 1, "augment.min_scale", "must be in (0, 1]");
        Require(Momentum is >= 0 and < 1, "momentum", "must be in [0, 1)");
        Require(LogEvery > 0, "log_every", "must be positive");
        Require(CheckpointEvery >= 0, "checkpoint_every", "must not be negative");
        Brainfuse?.Validate(source, Batch.Size, Objectives.Keys);
        if (BatchAdaptation is { } adaptation)
        {
            var options = adaptation.ToOptions(Batch.Size, source);
            options.Validate($"{source}: batch_adaptation");
            Require(options.MaxBatch <= Batch.Size, "batch_adaptation.max_batch",
                $"{options.MaxBatch} must not exceed batch.size {Batch.Size} (the loader's batches)");
            Require(!options.Enabled || Batch.Accumulation == 1, "batch_adaptation", $"needs batch.accumulation 1, not {Batch.Accumulation}");
        }
    }
}

/// <summary>Dynamic Batch Adaptation (DBA/EDBA): see <see cref="Training.BatchAdaptationOptions"/>. max_batch defaults to batch.size.</summary>
public sealed record BatchAdaptationSpec
{
    public string Strategy { get; init; } = "gradient_norm";
    public string Scope { get; init; } = "full";
    public int Candidates { get; init; }
    public double GrowAbove { get; init; } = 0.8;
    public double ShrinkBelow { get; init; } = 0.2;
    public int Delta { get; init; } = 8;
    public int MinBatch { get; init; } = 8;
    public int? MaxBatch { get; init; }
    public int InitialBatch { get; init; }
    public int Window { get; init; } = 1;
    public double MinSelected { get; init; }

    public Training.BatchAdaptationOptions ToOptions(int batchSize, string source) => new()
    {
        Strategy = Training.BatchAdaptationOptions.ParseStrategy(Strategy, $"{source}: batch_adaptation.strategy"),
        Scope = Training.BatchAdaptationOptions.ParseScope(Scope, $"{source}: batch_adaptation.scope"),
        Candidates = Candidates,
        GrowAbove = GrowAbove,
        ShrinkBelow = ShrinkBelow,
        Delta = Delta,
        MinBatch = MinBatch,
        MaxBatch = MaxBatch ?? batchSize,
        InitialBatch = InitialBatch,
        Window = Window,
        MinSelected = MinSelected,
    };
}

/// <summary>
/// One corpus of the mix: exactly one of data (the data spec every command takes: <c>data: medmnist:pathmnist,size=64</c>,
/// as finetune's and evaluate's --task), phantom, medmnist (an .npz), msd (a task folder), mnist (an IDX folder), with
/// its split and weight.
/// </summary>
public sealed record CorpusEntry
{
    /// <summary>The data in <see cref="DataSource"/>'s grammar (phantom:2d, medmnist:NAME, npz:FILE,subset=NAME, mnist:FOLDER, msd:FOLDER).</summary>
    public string? Data { get; set; }
    /// <summary>"2d" or "3d": the embedded phantom corpus.</summary>
    public string? Phantom { get; init; }
    /// <summary>A MedMNIST .npz file, or a subset's name (pathmnist, organmnist3d, …) to find in $MEDFORMER_HOME/medmnist.</summary>
    public string? Medmnist { get; init; }
    /// <summary>A Medical Segmentation Decathlon task folder.</summary>
    public string? Msd { get; init; }
    /// <summary>A folder in MNIST's layout (IDX files), e.g. /usr/share/datasets/fashion-mnist.</summary>
    public string? Mnist { get; init; }
    public string Split { get; init; } = "train";
    public int? Size { get; init; }
    public double Weight { get; init; } = 1.0;

    /// <summary>The data it names (validated entries only). Not part of the config as written (run_config.json, MLflow
    /// params): it repeats the keys above, and its phantom spec exists only for the phantom.</summary>
    [System.Text.Json.Serialization.JsonIgnore]
    public DataSource Source =>
        Data is { } data ? DataSource.Parse(data, Size, "data")
        : Phantom is { } dims ? new(DataKind.Phantom, dims, Size)
        : Medmnist is { } medmnist ? new(DataKind.MedMnist, medmnist, Size)
        : Msd is { } msd ? new(DataKind.Msd, msd)
        : new(DataKind.Mnist, Mnist ?? throw new InvalidOperationException("a corpus entry names no data"));

    internal void Validate(string where)
    {
        int given = new[] { Data, Phantom, Medmnist, Msd, Mnist }.Count(s => s is not null);
        if (given != 1) throw new ArgumentException($"{where}: give exactly one of phantom, medmnist, msd, mnist or data");
        if (Data is { } data) DataSource.Parse(data, Size, $"{where}.data");
        if (Phantom is not null and not ("2d" or "3d")) throw new ArgumentException($"{where}.phantom: '{Phantom}' must be 2d or 3d");
        if (!(Weight > 0)) throw new ArgumentException($"{where}.weight: {Weight} must be positive");
        if (Split is not ("train" or "val" or "test")) throw new ArgumentException($"{where}.split: '{Split}' must be train, val or test");
    }
}

/// <summary>An objective's weight and settings; a setting another objective owns is an error.</summary>
public sealed record ObjectiveSpec
{
    public double Weight { get; init; } = 1.0;
    public double? MaskRatio { get; init; }
    public bool? NormalizePixels { get; init; }
    public int? Grid { get; init; }
    public int? Permutations { get; init; }
    public double? Temperature { get; init; }
    public int? ProjectionDim { get; init; }
    public double? Lambda { get; init; }
    public double? Threshold { get; init; }
    public double? Gamma { get; init; }
    public double? InstanceWeight { get; init; }

    internal void Validate(string objective, string where)
    {
        if (!(Weight > 0) || !double.IsFinite(Weight)) throw new ArgumentException($"{where}.weight: {Weight} must be positive");
        var allowed = ObjectiveRegistry.SettingsOf(objective) ?? [];
        foreach (var (key, value) in Settings())
            if (value is not null && !allowed.Contains(key))
                throw new ArgumentException($"{where}.{key}: {objective} has no such " +
                    $"setting{(allowed.Count > 0 ? $" (it has {string.Join(", ", allowed)})" : "")}");
        if (MaskRatio is { } r && r is <= 0 or >= 1) throw new ArgumentException($"{where}.mask_ratio: {r} must be in (0, 1)");
        if (Grid is { } g && g < 2) throw new ArgumentException($"{where}.grid: {g} must be at least 2");
        if (Permutations is { } p && p < 2) throw new ArgumentException($"{where}.permutations: {p} must be at least 2");
        if (Temperature is { } t && !(t > 0)) throw new ArgumentException($"{where}.temperature: {t} must be positive");
        if (ProjectionDim is { } d && d < 1) throw new ArgumentException($"{where}.projection_dim: {d} must be positive");
        if (Lambda is { } l && !(l >= 0)) throw new ArgumentException($"{where}.lambda: {l} must not be negative");
        if (Threshold is { } th && !(th > 0)) throw new ArgumentException($"{where}.threshold: {th} must be positive");
        if (Gamma is { } ga && !(ga > 0)) throw new ArgumentException($"{where}.gamma: {ga} must be positive");
        if (InstanceWeight is { } iw && !(iw >= 0)) throw new ArgumentException($"{where}.instance_weight: {iw} must not be negative");
    }

    IEnumerable<(string, object?)> Settings() =>
    [
        ("mask_ratio", MaskRatio), ("normalize_pixels", NormalizePixels), ("grid", Grid), ("permutations", Permutations),
        ("temperature", Temperature), ("projection_dim", ProjectionDim), ("lambda", Lambda), ("threshold", Threshold),
        ("gamma", Gamma), ("instance_weight", InstanceWeight),
    ];
}

public sealed record OptimizerSpec
{
    public double Lr { get; init; } = 1e-3;
    public double MinLr { get; init; } = 1e-5;
    public double WeightDecay { get; init; } = 0.05;
    public List<double> Betas { get; init; } = [0.9, 0.95];
    public double GradClip { get; init; } = 1.0;
}

public sealed record ScheduleSpec
{
    public long MaxSteps { get; init; } = 600;
    public long WarmupSteps { get; init; } = 50;
}

public sealed record BatchSpec
{
    public int Size { get; init; } = 64;
    public int Accumulation { get; init; } = 1;
    public int Workers { get; init; } = 2;
}

/// <summary>The views' augmentation: random resized crops to a fixed size, flips, intensity jitter, noise.</summary>
public sealed record AugmentSpec
{
    public int ImageSize { get; init; } = 28;
    public int VolumeSize { get; init; } = 28;
    public double MinScale { get; init; } = 0.35;
    public bool Flip { get; init; } = true;
    public double Intensity { get; init; } = 0.2;
    public double Noise { get; init; } = 0.05;
}
