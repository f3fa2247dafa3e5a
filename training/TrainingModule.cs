using Medformer.Datasets.Loading;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// What the trainer trains: a module holding every trainable parameter (the Medformer under the name "model", so a
/// checkpoint can store it apart as model.safetensors), a loss per batch, and any state besides the weights and the
/// optimizer that a checkpoint must carry (momentum targets). Pretraining and fine-tuning each implement one.
/// </summary>
public abstract class TrainingModule : IDisposable
{
    /// <summary>The trainable module; its submodule "model" is the Medformer.</summary>
    public abstract nn.Module Module { get; }

    public abstract MedformerModel Model { get; }

    /// <summary>Called once the precision policy has converted <see cref="Module"/> (build what depends on its dtype).</summary>
    public virtual void Prepare(ScalarType computeType, Device device) { }

    /// <summary>The fp32 loss of one micro-batch, with named parts for the logs.</summary>
    public abstract (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step);

    /// <summary>
    /// The fp32 per-sample losses [B] of one micro-batch (their mean is <see cref="Loss"/>), with per-sample named
    /// parts: what batch adaptation (DBA/EDBA) differentiates sample by sample. Null where the task has none.
    /// </summary>
    public virtual (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step) => null;

    /// <summary>Why the task has no per-sample loss (the batch-adaptation error says it); null when it has one.</summary>
    public virtual string? NoPerSampleLoss => $"{GetType().Name} has no per-sample loss";

    /// <summary>The Linear layers whose outputs the loss reads: EDBA's "last layer" (its per-sample gradients are batched outer products).</summary>
    public virtual IReadOnlyList<Linear> LastLayers => [];

    /// <summary>
    /// The learning-rate multiplier of a trainable parameter, by its name in <see cref="Module"/> ("model.blocks.0.…"):
    /// 1 everywhere unless the task scales groups (fine-tuning's layer-wise decay). Frozen parameters
    /// (<c>requires_grad</c> false) stay out of the optimizer.
    /// </summary>
    public virtual double LearningRateScale(string parameterName) => 1;

    /// <summary>After each optimizer step that was taken (e.g. the momentum target's update).</summary>
    public virtual void AfterStep(long step, long maxSteps) { }

    /// <summary>Extra tensors for a checkpoint (file name → tensors), e.g. "ema.safetensors".</summary>
    public virtual IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> ExtraState() =>
        new Dictionary<string, IReadOnlyDictionary<string, Tensor>>();

    /// <summary>
    /// Extra files for the final model folder (name → writer), given the fp32 weights of the module's parameters
    /// outside "model" by name (a fine-tuned head's): none for pretraining, whose model folder is the Medformer alone.
    /// </summary>
    public virtual IReadOnlyDictionary<string, Action<string>> ModelFiles(IReadOnlyDictionary<string, Tensor> otherWeights) =>
        new Dictionary<string, Action<string>>();

    public virtual void LoadExtraState(string file, IReadOnlyDictionary<string, Tensor> tensors, string source) { }

    public abstract void Dispose();
}
