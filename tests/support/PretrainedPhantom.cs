using Medformer.Pretrain;
using Xunit;

namespace Medformer.Tests;

/// <summary>
/// The default pretraining job (tiny model, phantom corpus, inpainting + SimCLR, its 600 steps) run once for the
/// tests that need it: every objective of the default mix learns (pretrain), and pretraining pays for a probe
/// (pretrain) and for fine-tuning on 10% of the labels (heads). MEDFORMER_PAYS_TEST_STEPS sets other steps.
/// </summary>
public sealed class PretrainedPhantom : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-pretrained-phantom-").FullName;

    public PretrainedPhantom()
    {
        Config = new RunConfig { CheckpointEvery = 0 };
        if (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TEST_STEPS") is { } steps) Config.Schedule.MaxSteps = long.Parse(steps);
        Steps = Config.Schedule.MaxSteps;
        Result = PretrainJob.Run(Config, root, log: entry => Log.Add($"step {entry.Step}: {entry.Loss:F4} {string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))}"));
        ModelDirectory = Result.Training.ModelDirectory;
    }

    public long Steps { get; }

    public PretrainResult Result { get; }

    public RunConfig Config { get; }

    /// <summary>The pretrained model folder (config.json + model.safetensors).</summary>
    public string ModelDirectory { get; }

    /// <summary>The pretraining's log lines.</summary>
    public List<string> Log { get; } = [];

    public void Dispose() => Directory.Delete(root, recursive: true);
}

/// <summary>The tests that share one pretrained model; they run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class PretrainedPhantomCollection : ICollectionFixture<PretrainedPhantom>
{
    public const string Name = "pretrained phantom";
}
