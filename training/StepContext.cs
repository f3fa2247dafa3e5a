using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// What a task's loss may use during one step besides its module and the batch: the step's own random generator
/// (seeded from the run's seed and the step, so a resumed run draws the same), the precision policy's input cast,
/// and the cross-rank gather and sum with gradient (null in one process). Tasks that need more per step (pretraining's
/// momentum target) derive their own context from this one.
/// </summary>
public record StepContext(
    long Step,
    Generator Generator,
    Func<Tensor, Tensor> Cast,
    Func<Tensor, Tensor>? Gather = null,
    Func<Tensor, Tensor>? AllReduceSum = null,
    int Rank = 0);
