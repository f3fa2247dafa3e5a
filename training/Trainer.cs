using Medformer.Datasets.Loading;
using Medformer.Runtime.Distributed;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// The training loop, shared by pretraining and fine-tuning (Lightning's Trainer, in small): AdamW on fp32 master
/// weights with no weight decay on norms, biases, latents and queries; warmup then cosine; gradient accumulation
/// and clipping; the precision policy; a guard that skips a step whose loss or gradient is not finite and stops
/// after too many in a row; logs, evaluation hooks and atomic checkpoints.
/// <para>
/// Every random draw of step s comes from a generator seeded by (seed, s) and the loader's order is a function of
/// the batch index, so a run resumed from a checkpoint (<c>resume: true</c>) replays exactly what the uninterrupted
/// run would have done: on a CPU in deterministic mode, bit for bit.
/// </para>
/// <para>
/// With batch adaptation (<see cref="TrainerOptions.BatchAdaptation"/>) the loader still gives batches of its fixed
/// size (max_batch) at the same indices, and a step takes the first current-batch-size samples of its batch: the
/// loader's position stays step × accumulation, and the batch size and the rule's window go into trainer.json, so
/// a resumed run replays the same sizes and selections. (The unused tail of a batch is skipped; every epoch
/// reshuffles, so each sample still has the same chance of being used.)
/// </para>
/// <para>
/// Data parallel (a <see cref="ProcessGroup"/> of more than one rank; DDP's recipe): each rank trains on its own
/// batches (the loader's shard); parameters and buffers are broadcast from rank 0 before the precision policy and
/// the momentum target copy them, so every rank starts, and stays, identical; after the backward pass gradients
/// are averaged over ranks in flat buckets; the objectives' gathers, Barlow Twins' statistics and the projectors'
/// BatchNorm span every rank (the global batch); the step's loss, finiteness and interruption are agreed over
/// ranks, so every rank skips the same steps and stops after the same one. Rank 0 alone writes checkpoints and the model; every rank reads them to resume.
/// </para>
/// </summary>
public sealed class Trainer(TrainerOptions options, Device device, Action<string>? notice = null, ProcessGroup? group = null)
{
    public TrainerOptions Options { get; } = options;

    /// <param name="batches">The loader's batches from a batch index (0, or where a resumed run left off).</param>
    /// <param name="outputDirectory">Checkpoints go to <c>checkpoint-NNNNNN/</c> in it, the final model to <c>model/</c>.</param>
    /// <param name="resume">Continue from the newest whole checkpoint in <paramref name="outputDirectory"/>.</param>
    public TrainerResult Fit(TrainingModule task, Func<long, IEnumerable<Batch>> batches, string outputDirectory, bool resume = false,
        Action<TrainerLog>? log = null, Func<long, IReadOnlyDictionary<string, double>>? evaluate = null, CancellationToken cancel = default)
    {
        Options.Validate();
        using var loop = new TrainingLoop(Options, device, notice, group, task, outputDirectory, cancel);
        if (resume) loop.Resume();
        return loop.Run(batches, log, evaluate);
    }

    /// <summary>The first <paramref name="count"/> samples of a batch (views of its tensors).</summary>
    internal static Batch Take(Batch batch, int count) =>
        new(batch.Index, [.. batch.Views.Select(v => new BatchView(v.Images.narrow(0, 0, count), v.Targets?.narrow(0, 0, count), v.Coordinates?.narrow(0, 0,
            count)))],
            [.. batch.Metas.Take(count)]);
}
