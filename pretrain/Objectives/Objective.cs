using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// A self-supervised objective: a small module over the shared encoder, with its own task latents (the bank named
/// <see cref="Task"/>) and its own queries and heads. Several run in one pretraining job, their losses weighted.
/// </summary>
public abstract class Objective : nn.Module
{
    protected Objective(string task) : base(task) => Task = task;

    /// <summary>The task bank this objective's samples select, and its name in configs and logs.</summary>
    public string Task { get; }

    /// <summary>Augmented views of each sample the loader must supply (1, or 2 for the contrastive objectives).</summary>
    public virtual int Views => 1;

    /// <summary>Whether the views must carry each pixel's original coordinates (PixPro).</summary>
    public virtual bool TrackCoordinates => false;

    /// <summary>The head whose momentum (EMA) copy the target network carries, for BYOL and PixPro; null if none.</summary>
    public virtual nn.Module? TargetHead => null;

    /// <summary>Whether the objective reads the momentum target network (BYOL, PixPro).</summary>
    public virtual bool UsesMomentumTarget => TargetHead is not null;

    /// <summary>A freshly built module of the same shape as <see cref="TargetHead"/> (the target's copy).</summary>
    public virtual nn.Module? CreateTargetHead() => null;

    /// <summary>The objective's fp32 scalar loss on a batch. Randomness comes from <paramref name="step"/>'s generator only.</summary>
    public abstract Tensor Loss(MedformerModel model, Batch batch, PretrainStep step);

    /// <summary>
    /// The loss of a model that learned nothing from the images, on this batch: the level a run that learns falls
    /// below (rotation ln 4, jigsaw ln P, SimCLR ln(2N − 1); inpainting: the best constant, the batch's mean pixel).
    /// Null where none is defined (BYOL's and Barlow Twins' losses say little of chance: a collapsed BYOL scores 0).
    /// </summary>
    public virtual double? ChanceLoss(Batch batch, PretrainStep step) => null;

    /// <summary>
    /// Whether the loss is a mean of per-sample losses, each reading its own sample only (what batch adaptation's
    /// per-sample gradients need). Contrastive and redundancy-reduction losses couple the samples of a batch.
    /// </summary>
    public virtual bool PerSample => false;

    /// <summary>The per-sample fp32 losses [B], whose mean is <see cref="Loss"/> (same draws from the step's generator).</summary>
    public virtual Tensor PerSampleLoss(MedformerModel model, Batch batch, PretrainStep step) =>
        throw new NotSupportedException($"objective '{Task}' couples the samples of a batch: it has no per-sample loss");

    /// <summary>The Linear layers whose outputs the loss reads (EDBA's last layer); those that did not run on a batch are skipped.</summary>
    public virtual IReadOnlyList<Linear> LastLayers => [];

    /// <summary>The latent keys of a batch for this objective: each sample's organ and modality, and this task.</summary>
    protected IReadOnlyList<LatentKey> Keys(Batch batch) => [.. batch.Metas.Select(m => new LatentKey(m.Organ, m.Modality, Task))];

    /// <summary>A learned query [1,n,d], initialised as the model's latents are.</summary>
    public static Parameter Query(int count, int dim) => Runtime.Init.TruncatedNormalParameter([1, count, dim]);
}
