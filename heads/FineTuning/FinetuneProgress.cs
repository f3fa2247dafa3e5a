using System.Text.Json.Nodes;
using Medformer.Training;

namespace Medformer.Heads.FineTuning;

/// <summary>What a fine-tuning job is about to train: the corpus, the head and the schedule.</summary>
public sealed record FinetuneStart(string TrainName, long TrainSamples, string HeadKind, JsonObject HeadSettings, Strategy Strategy, long MaxSteps,
    int BatchSize);

/// <summary>
/// Where self-training or FixMatch starts: the method ("self-training" or "fixmatch"), the test scores of the model
/// fine-tuned on the labels alone (self-training's teacher), and how many images without labels it goes on with.
/// </summary>
public sealed record SemiSupervisedStart(string Method, IReadOnlyDictionary<string, double> Test, long Unlabelled);

/// <summary>
/// A fine-tuning job's callbacks, each optional. <see cref="Log"/>'s steps start at 1 again when self-training
/// rounds or FixMatch follow fine-tuning.
/// </summary>
public sealed record FinetuneProgress
{
    public Action<FinetuneStart>? Started { get; init; }
    public Action<TrainerLog>? Log { get; init; }
    public Action<string>? Notice { get; init; }
    public Action<SemiSupervisedStart>? SemiSupervised { get; init; }
}
