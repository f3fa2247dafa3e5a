using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// What an objective may use during one step besides the model and the batch: the step's own random generator
/// (seeded from the run's seed and the step, so a resumed run draws the same), the precision policy's input cast,
/// the momentum target network (BYOL, PixPro), and the cross-rank gathers (identity in one process).
/// </summary>
public sealed record StepContext(
    long Step,
    Generator Generator,
    Func<Tensor, Tensor> Cast,
    MomentumTarget? Target = null,
    Func<Tensor, Tensor>? Gather = null,
    Func<Tensor, Tensor>? AllReduceSum = null,
    int Rank = 0);
