using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// BrainFuse's training loss for a head (<see cref="BrainFuseOptions"/>): the rows <see cref="BrainFuseBatch"/> draws
/// become mixes of K of the batch's subjects; the other rows keep the head's own loss, each mix takes the head's soft
/// loss against the same combination of its parts' targets, plus λ · the soft loss of its prediction against the
/// combination of the parts' predictions, computed without gradient (stop-gradient targets: no gradient reaches the
/// parts' forward pass). One loss per sample in the batch's order, so batch adaptation (DBA/EDBA) applies.
/// </summary>
internal static class BrainFuseMixing
{
    /// <summary>Checks that the head can learn from combined targets and that a batch can hold a mix.</summary>
    public static void Check(BrainFuseOptions options, Head head, int batchSize, BatchAdaptationOptions? adaptation)
    {
        options.Validate();
        if (!head.CombinesTargets)
            throw new ArgumentException($"{BrainFuseOptions.Flag}: the {head.Kind} head cannot combine targets (classification and segmentation heads can)");
        if (batchSize < options.Parts)
            throw new ArgumentException($"{BrainFuseOptions.Flag}: parts={options.Parts} needs batches of at least {options.Parts} samples, not {batchSize}");
        if (adaptation is { Enabled: true } a && a.MinBatch < options.Parts)
            throw new ArgumentException($"{BrainFuseOptions.Flag}: parts={options.Parts} needs batches of at least {options.Parts}; " +
                $"--dba min_batch={a.MinBatch} may go below");
    }

    /// <summary>
    /// Per-sample fp32 losses [B] of <paramref name="batch"/> with its mixes, and the parts "brainfuse" (the mixes'
    /// target loss) and, with consistency, "consistency" (the mixes' consistency loss, before λ).
    /// <paramref name="outputs"/> runs the model and head on images already cast to the compute dtype.
    /// </summary>
    public static (Tensor Losses, Dictionary<string, Tensor> Parts) Losses(BrainFuseOptions options, Head head, Batch batch, StepContext step,
        Func<Tensor, IReadOnlyList<SampleMeta>, Tensor> outputs, Device device)
    {
        using var scope = NewDisposeScope();
        var cpuImages = batch.Images.cpu();
        using var mixes = BrainFuseBatch.Draw(options.Mixer, cpuImages, batch.Metas, options.Parts, options.Share, step.Generator, BrainFuseOptions.Flag);
        var rows = tensor(mixes.Rows, device: device);
        var mixed = step.Cast(mixes.MixImages(cpuImages).to(device));
        var raw = outputs(mixed, batch.Metas);
        // Rows that are not mixes keep the head's loss; the mixes' rows of it are replaced below (no gradient through them).
        var losses = head.Losses(raw, batch).to(ScalarType.Float32);
        var mixOutputs = raw.index_select(0, rows);
        var targets = mixes.Combine(head.SoftTargets(batch, device));
        var targetLosses = head.SoftLosses(mixOutputs, targets).to(ScalarType.Float32);
        var mixLosses = targetLosses;
        var parts = new Dictionary<string, Tensor> { ["brainfuse"] = targetLosses.detach().mean() };
        if (options.Consistency > 0)
        {
            var consistency = head.SoftLosses(mixOutputs, PartsPrediction(mixes, head, batch, step, outputs, device), labels: false).to(ScalarType.Float32);
            mixLosses = targetLosses + consistency * options.Consistency;
            parts["consistency"] = consistency.detach().mean();
        }
        var all = losses.index_copy(0, rows, mixLosses);
        scope.MoveToOuter(all);
        foreach (var part in parts.Values) scope.MoveToOuter(part);
        return (all, parts);
    }

    /// <summary>
    /// The consistency target of each mix: <see cref="BrainFuseBatch.Combine"/> of the head's soft predictions on its
    /// (unmixed) parts, computed without gradient: [M,…], fp32.
    /// </summary>
    internal static Tensor PartsPrediction(BrainFuseBatch mixes, Head head, Batch batch, StepContext step,
        Func<Tensor, IReadOnlyList<SampleMeta>, Tensor> outputs, Device device)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        long[] read = mixes.PartRows;
        var index = tensor(read);
        var images = step.Cast(batch.Images.index_select(0, index).to(device));
        var predictions = head.SoftPredictions(outputs(images, [.. read.Select(i => batch.Metas[(int)i])])).to(ScalarType.Float32);
        // Back to one row per batch sample (rows no mix reads stay 0 and are never combined).
        var perRow = zeros([batch.Count, .. predictions.shape[1..]], dtype: ScalarType.Float32, device: predictions.device)
            .index_copy(0, index.to(predictions.device), predictions);
        return scope.MoveToOuter(mixes.Combine(perRow).detach());
    }
}
