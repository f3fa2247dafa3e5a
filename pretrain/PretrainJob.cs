using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Layouts;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using static TorchSharp.torch;

namespace Medformer.Pretrain;

/// <summary>Command-line values that take precedence over the run config (null: keep the config's).</summary>
/// <param name="RunId">The tracking run the training reports to (kept in trainer.json; a resumed run continues it).</param>
public sealed record PretrainOverrides(string? Device = null, string? Precision = null, long? Seed = null, long? MaxSteps = null,
    bool Resume = false, bool? Strict = null, string? RunId = null);

/// <summary>What a pretraining job leaves: the trainer's result and the loader's account of skipped samples.</summary>
public sealed record PretrainResult(TrainerResult Training, IReadOnlyDictionary<string, long> Skipped, IReadOnlyList<string> SkipReasons,
    string Device, IReadOnlyList<ObjectiveOutcome> Objectives)
{
    /// <summary>"bf16", or "fp32, bf16 requested" when bf16 fell back on a CPU without fast bf16.</summary>
    public string Precision => PretrainJob.DescribePrecision(Training.Precision, Training.RequestedPrecision);
}

/// <summary>
/// A job's settings checked before anything is written: the device, the precision that will run (and the one asked
/// for), the checkpoint a resumed run starts from with the tracking run it reported to, and <see cref="Config"/>, the
/// run config with the command line's values: made once, what the job runs, writes to run_config.json and tracks.
/// </summary>
public sealed record PretrainPlan(Device Device, Precision Precision, Precision RequestedPrecision, string? ResumeFrom, string? ResumeRunId,
    RunConfig Config);

/// <summary>
/// The main job, from a run config to a pretrained model: corpora → augmentation → loader (views as the objectives
/// need) → Medformer and objectives → trainer. The CLI only parses arguments and shows progress.
/// </summary>
public static class PretrainJob
{
    /// <summary>Checks <paramref name="config"/> with the command line's values (<see cref="Check"/>) and runs it.</summary>
    /// <param name="group">Data parallel: this process's rank; each rank reads its shard, rank 0 writes (see <see cref="Trainer"/>).</param>
    public static PretrainResult Run(RunConfig config, string outputDirectory, PretrainOverrides? overrides = null,
        Action<TrainerLog>? log = null, Action<string>? notice = null, CancellationToken cancel = default, ProcessGroup? group = null)
    {
        overrides ??= new PretrainOverrides();
        return Run(Check(config, outputDirectory, overrides, group?.LocalRank), outputDirectory, overrides, log, notice, cancel, group);
    }

    /// <summary>Runs a checked job: its config (the overrides applied once, in <see cref="Check"/>) on its device.</summary>
    /// <param name="overrides">What the plan does not hold: whether to resume, and the tracking run to report to.</param>
    public static PretrainResult Run(PretrainPlan plan, string outputDirectory, PretrainOverrides overrides,
        Action<TrainerLog>? log = null, Action<string>? notice = null, CancellationToken cancel = default, ProcessGroup? group = null)
    {
        var config = plan.Config;
        var device = plan.Device;
        Seeding.SeedEverything(config.Seed);

        var modelConfig = MedformerConfig.Resolve(config.Model);
        var objectives = Objectives(config, modelConfig);
        var model = new MedformerModel(modelConfig);
        using var task = new Pretraining(model, objectives, config.Momentum, config.Brainfuse?.ToViews("run config"));

        // Rank 0 opens the corpora first: the phantom corpus is generated on first use, once.
        if (group is { Rank: > 0 }) group.Barrier();
        var corpora = config.Corpora.Select(Open).ToList();
        if (group is { Rank: 0 }) group.Barrier();
        try
        {
            var options = TrainerOptions(config) with { Device = device, RunId = overrides.RunId };
            var sources = corpora.Select((corpus, i) => new LoaderSource(corpus, config.Corpora[i].Weight,
                Augmentation(config.Augment, corpus, modelConfig), task.Views, task.TrackCoordinates)).ToList();
            var loader = new DataLoader(sources, new LoaderOptions(options.BatchSize, config.Seed, options.Workers,
                Rank: group?.Rank ?? 0, WorldSize: group?.WorldSize ?? 1, Strict: config.Strict));
            Directory.CreateDirectory(outputDirectory);
            if (group is null or { Rank: 0 }) File.WriteAllText(Path.Combine(outputDirectory, "run_config.json"), ToJson(config));
            var result = new Trainer(options, device, notice, group).Fit(task, loader.Batches, outputDirectory, overrides.Resume, log, cancel: cancel);
            return new PretrainResult(result, loader.Skipped, loader.SkipReasons, device.ToString(), ObjectiveOutcome.Of(result.History, task.ChanceLosses));
        }
        finally
        {
            foreach (var corpus in corpora) (corpus as IDisposable)?.Dispose();
        }
    }

    /// <summary>
    /// Everything about a job that can be wrong before it runs, checked without writing anything (no output folder,
    /// no tracking run): the config with the command line's values, the device, the precision on this machine, the
    /// model preset, the objectives, the corpora's files, and with <c>--resume</c> a checkpoint to resume from.
    /// </summary>
    /// <param name="localRank">Data parallel: this process's GPU among the node's, for a device given as "cuda".</param>
    public static PretrainPlan Check(RunConfig config, string outputDirectory, PretrainOverrides overrides, int? localRank = null)
    {
        config = ApplyOverrides(config, overrides);
        var device = DeviceSpec.Resolve(overrides.Device ?? config.Device, localRank);
        var requested = config.ParsePrecision("run config");
        var (effective, _) = MixedPrecision.Resolve(requested, device);
        var model = MedformerConfig.Resolve(config.Model);
        foreach (var (objective, _) in Objectives(config, model)) objective.Dispose();
        TrainerOptions(config).Validate();
        for (int i = 0; i < config.Corpora.Count; i++) CheckFiles(config.Corpora[i], $"corpora[{i}]");
        string? from = null, runId = null;
        if (overrides.Resume)
        {
            from = TrainingCheckpoint.Latest(outputDirectory)
                ?? throw new
                    ArgumentException($"--resume: no checkpoint in {outputDirectory} to resume from (a run interrupted before its first checkpoint has " +
                        "none: start it again without --resume)");
            runId = TrainingCheckpoint.RunIdOf(from);
        }
        return new PretrainPlan(device, effective, requested, from, runId, config);
    }

    static void CheckFiles(CorpusEntry spec, string where)
    {
        if (spec.Data is not null) spec.Source.Check($"{where}.data");
        if (spec.Msd is { } msd && !Directory.Exists(msd)) throw new ArgumentException($"{where}.msd: {msd}: no such folder");
        if (spec.Mnist is { } mnist && !Directory.Exists(mnist) && !File.Exists(mnist)) throw new ArgumentException($"{where}.mnist: {mnist}: no such folder");
        if (spec.Medmnist is { } medmnist && !File.Exists(medmnist) && !MedMnistRegistry.Default.TryGet(medmnist, out _))
            throw new ArgumentException($"{where}.medmnist: {medmnist}: no such file, and not a MedMNIST subset's name");
    }

    /// <summary>"bf16", or "fp32, bf16 requested" where the run fell back.</summary>
    public static string DescribePrecision(Precision ran, Precision requested) =>
        ran == requested ? ran.Name() : $"{ran.Name()}, {requested.Name()} requested";

    /// <summary>A new config with the command line's values, checked: the config the job runs (and logs).</summary>
    public static RunConfig ApplyOverrides(RunConfig config, PretrainOverrides overrides)
    {
        var applied = config with
        {
            Precision = overrides.Precision ?? config.Precision,
            Seed = overrides.Seed ?? config.Seed,
            Schedule = overrides.MaxSteps is { } steps ? config.Schedule with { MaxSteps = steps } : config.Schedule,
            Strict = overrides.Strict ?? config.Strict,
        };
        applied.Validate("run config");
        return applied;
    }

    /// <summary>The run config as run_config.json holds it (snake_case keys).</summary>
    public static string ToJson(RunConfig config) => JsonSerializer.Serialize(config, RunJson);

    static readonly JsonSerializerOptions RunJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower, WriteIndented = true };

    /// <summary>The run's objectives, built for <paramref name="model"/>, with their weights.</summary>
    public static List<(Objective Objective, double Weight)> Objectives(RunConfig config, MedformerConfig model) =>
        [.. config.Objectives.Select(o => (ObjectiveRegistry.Create(o.Key, o.Value ?? new ObjectiveSpec(), model), (o.Value ?? new ObjectiveSpec()).Weight))];

    /// <summary>The trainer's options as the run config sets them.</summary>
    public static TrainerOptions TrainerOptions(RunConfig config) => new()
    {
        MaxSteps = config.Schedule.MaxSteps,
        BatchSize = config.Batch.Size,
        Workers = config.Batch.Workers,
        WarmupSteps = config.Schedule.WarmupSteps,
        LearningRate = config.Optimizer.Lr,
        MinLearningRate = config.Optimizer.MinLr,
        WeightDecay = config.Optimizer.WeightDecay,
        Beta1 = config.Optimizer.Betas[0],
        Beta2 = config.Optimizer.Betas[1],
        GradClip = config.Optimizer.GradClip,
        Accumulation = config.Batch.Accumulation,
        Precision = config.ParsePrecision("run config"),
        Seed = config.Seed,
        LogEvery = config.LogEvery,
        CheckpointEvery = config.CheckpointEvery,
        BatchAdaptation = config.BatchAdaptation?.ToOptions(config.Batch.Size, "run config"),
    };

    /// <summary>Opens one corpus of a run config (phantom, MedMNIST file or subset name, MSD folder, MNIST folder), its split.</summary>
    public static ICorpus Open(CorpusEntry entry) => entry.Source.Open(entry.Split);

    /// <summary>
    /// The views' augmentation: a random resized crop to the model's input size, flips, intensity scale and shift,
    /// Gaussian noise; volumes get a random crop of volume_size. Quarter turns and up-down flips are left out:
    /// rotation prediction would lose its label.
    /// </summary>
    public static ITransform Augmentation(AugmentSpec spec, ICorpus corpus, MedformerConfig model)
    {
        using var probe = corpus.Get(0);
        bool volume = probe.Meta.Dimensionality.IsVolume;
        int axes = volume ? 3 : 2;
        long size = volume ? spec.VolumeSize : spec.ImageSize;
        int patch = volume ? model.PatchSize3d : model.PatchSize2d;
        if (size % patch != 0)
            throw new ArgumentException($"augment.{(volume ? "volume_size" : "image_size")} {size} is not a multiple of the model's patch size {patch}");
        var steps = new List<ITransform>
        {
            volume
                ? new Compose([new ResizeWithPadOrCrop([.. probe.SpatialShape.Select(n => Math.Max(n, size))]), new RandSpatialCrop([.. Enumerable.Repeat(size,
                    axes)])])
                : new RandResizedCrop([.. Enumerable.Repeat(size, axes)], MinScale: spec.MinScale),
        };
        // Left-right flips only: a vertical flip of an image whose anatomy is left-right symmetric equals its 180° turn,
        // which leaves rotation prediction nothing to predict (it sat at ln 4 with flips on every axis).
        if (spec.Flip) steps.Add(new RandFlip(0.5, [axes - 1]));
        if (spec.Intensity > 0)
        {
            steps.Add(new RandScaleIntensity(spec.Intensity, Probability: 0.8));
            steps.Add(new RandShiftIntensity(spec.Intensity, Probability: 0.8));
        }
        if (spec.Noise > 0) steps.Add(new RandGaussianNoise(0.5, Std: spec.Noise));
        return new Compose(steps);
    }
}
