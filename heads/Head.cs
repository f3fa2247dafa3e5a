using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Loading;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>What a head reads: the model (to decode its own queries), the encoder's latents [B,N,d] of a batch, the
/// batch's image shape [B,C,H,W] or [B,C,D,H,W] and its metas, and the images themselves as the model saw them
/// (on its device, in its dtype), which dense heads read pixel by pixel.</summary>
public sealed record HeadInput(MedformerModel Model, Tensor Latents, long[] ImageShape, IReadOnlyList<SampleMeta> Metas, Tensor? Images = null)
{
    /// <summary>The images' spatial extent ([H,W] or [D,H,W]).</summary>
    public long[] SpatialShape => ImageShape[2..];
}

/// <summary>What a head's predictions are, so <c>medformer predict</c> knows how to write them.</summary>
public enum HeadOutput
{
    /// <summary>[B,K] class probabilities: JSON and CSV.</summary>
    Probabilities,
    /// <summary>[B,1,…] int64 class per pixel or voxel: NIfTI.</summary>
    Mask,
    /// <summary>[B,C,…] float32 images: NIfTI, with PNG previews.</summary>
    Image,
}

/// <summary>
/// A task head on a Medformer, designed for extension: subclass it, build your layers in the constructor (they
/// train with the model under the <see cref="FineTuning.FineTuner"/>'s strategy), and implement
/// <see cref="nn.Module{T,TResult}.forward"/> (latents → raw outputs, e.g. logits), <see cref="Losses"/> (raw
/// outputs + batch → one fp32 loss per sample) and <see cref="Predict"/> (raw outputs → what a user gets, e.g.
/// probabilities). Samples select the task bank <see cref="Task"/>: a name the model's config lists
/// (<see cref="Pretrained.Load"/> adds a new one to a pretrained model). Per-sample losses make batch adaptation
/// (DBA) apply to every head; <see cref="OutputLayers"/> names the Linear layers EDBA reads.
/// <para>
/// A head saved with a fine-tuned model (head.json + head.safetensors) is rebuilt by <see cref="HeadRegistry"/>
/// from <see cref="Kind"/> and <see cref="Settings"/>: register a custom kind there to load it by name.
/// </para>
/// </summary>
public abstract class Head : nn.Module<HeadInput, Tensor>
{
    protected Head(string name, string task) : base(name)
    {
        if (string.IsNullOrEmpty(task) || !task.All(c => char.IsAsciiLetterOrDigit(c) || c == '_'))
            throw new ArgumentException($"head task '{task}': a task bank name is ASCII letters, digits and '_'");
        Task = task;
    }

    /// <summary>The latent task bank the head's samples select (e.g. "classification", or a new one per data set).</summary>
    public string Task { get; }

    /// <summary>The registry name this head is saved and loaded under (e.g. "classification").</summary>
    public abstract string Kind { get; }

    /// <summary>What <see cref="HeadRegistry"/> needs, besides the model config, to rebuild this head (saved as head.json).</summary>
    public virtual JsonObject Settings() => [];

    /// <summary>What <see cref="Predict"/> gives.</summary>
    public virtual HeadOutput Output => HeadOutput.Probabilities;

    /// <summary>Per-sample fp32 losses [B] of raw outputs against the batch's labels (metas) or targets; their mean is the loss.</summary>
    public abstract Tensor Losses(Tensor outputs, Batch batch);

    /// <summary>Raw outputs → predictions (fp32): probabilities [B,K], masks or images.</summary>
    public abstract Tensor Predict(Tensor outputs);

    /// <summary>
    /// Whether the head can learn from combined targets (BrainFuse's mixes, <c>--brainfuse</c>): it then gives
    /// <see cref="SoftTargets"/>, <see cref="SoftLosses"/> and <see cref="SoftPredictions"/>. Heads that cannot are refused.
    /// </summary>
    public virtual bool CombinesTargets => false;

    /// <summary>
    /// The batch's targets as per-sample tensors that combine linearly, on <paramref name="device"/>: class
    /// distributions [B,K] (one-hot, or 0/1 per label), one-hot maps [B,K,…]. What <see cref="SoftLosses"/> reads.
    /// </summary>
    public virtual Tensor SoftTargets(Batch batch, Device device) =>
        throw new NotSupportedException($"the {Kind} head cannot combine targets");

    /// <summary>
    /// Per-sample fp32 losses [B] of raw outputs against soft targets shaped as <see cref="SoftTargets"/> gives them
    /// (combined targets, or the combination of predictions for a consistency term); <paramref name="labels"/> says
    /// they are labels, so the head's label smoothing applies (not to predictions).
    /// </summary>
    public virtual Tensor SoftLosses(Tensor outputs, Tensor targets, bool labels = true) =>
        throw new NotSupportedException($"the {Kind} head cannot combine targets");

    /// <summary>Raw outputs → fp32 predictions in the space of <see cref="SoftTargets"/> (probabilities [B,K], [B,K,…]).</summary>
    public virtual Tensor SoftPredictions(Tensor outputs) =>
        throw new NotSupportedException($"the {Kind} head cannot combine targets");

    /// <summary>A fresh metric accumulator for evaluation, or null when the head has none.</summary>
    public virtual HeadMetric? CreateMetric() => null;

    /// <summary>The Linear layers whose outputs the loss reads (EDBA's last layer); empty where there is none.</summary>
    public virtual IReadOnlyList<Linear> OutputLayers => [];
}

/// <summary>
/// Accumulates a head's evaluation over batches (torchmetrics' Metric): <see cref="Update"/> with each batch's
/// predictions (CPU, fp32) and the batch, then <see cref="Compute"/> the named values (e.g. accuracy, auc).
/// </summary>
public abstract class HeadMetric
{
    public abstract void Update(Tensor predictions, Batch batch);

    public abstract IReadOnlyDictionary<string, double> Compute();
}
