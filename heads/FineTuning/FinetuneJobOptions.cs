using Medformer.Datasets.Corpora;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// A fine-tuning job as plain data (what <c>medformer finetune</c> parses): a pretrained model, a labelled corpus,
/// a head, what trains and on how many labels, and optionally self-training or FixMatch on the images without them.
/// </summary>
public sealed record FinetuneJobOptions
{
    /// <summary>The pretrained model: a folder (config.json + model.safetensors) or a hub name.</summary>
    public required string Checkpoint { get; init; }
    /// <summary>The labelled corpus and its splits (training, validation, test).</summary>
    public required DataSource Task { get; init; }
    /// <summary>The head and its settings as <see cref="HeadRegistry.ParseSpec"/> reads them; null: <see cref="FinetuneJob.DefaultHead"/>.</summary>
    public string? Head { get; init; }
    /// <summary>Dense heads: the training crop and scoring window (one size for every axis, or one per axis); null: 32³ for volumes of MSD and PET.</summary>
    public long[]? Roi { get; init; }
    public Strategy Strategy { get; init; } = Strategy.Full;
    /// <summary>The fraction of the training labels used, stratified by class, in (0, 1] (<see cref="LabelFraction"/>).</summary>
    public double Fraction { get; init; } = 1;
    /// <summary>How to fine-tune; <see cref="FineTuneOptions.OutputDirectory"/> is where the model folder goes.</summary>
    public FineTuneOptions FineTune { get; init; } = new();
    /// <summary>Train on random crops and flips (2D) or flips (volumes, crops by <see cref="Roi"/>).</summary>
    public bool Augment { get; init; } = true;
    /// <summary>Self-training after fine-tuning on the images <see cref="Fraction"/> leaves out; null: off.</summary>
    public SelfTrainingOptions? SelfTraining { get; init; }
    /// <summary>Self-training's student is a new model and head from the checkpoint (else the teacher goes on).</summary>
    public bool FreshStudent { get; init; }
    /// <summary>FixMatch after fine-tuning on the images <see cref="Fraction"/> leaves out; null: off.</summary>
    public FixMatchOptions? FixMatch { get; init; }
    /// <summary>FixMatch's steps; null: <see cref="FineTuneOptions.MaxSteps"/>.</summary>
    public long? FixMatchSteps { get; init; }
}
