using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Pretrain.Objectives;
using static TorchSharp.torch;

namespace Medformer.Pretrain;

/// <summary>
/// BrainFuse in pretraining (<see cref="BrainFuseSpec"/>): <see cref="Mix"/> draws one set of mixes per step from the
/// step's generator (so a resumed run mixes the same) and gives the batch with the mixes' rows replaced in every view
/// by the same weights; <see cref="Consistency"/> is the term that pulls each mix's projections towards the
/// combination of its parts' stop-gradient projections.
/// </summary>
public sealed record BrainFuseViews(BrainFuse Mixer, int Parts, double Share, double ConsistencyWeight)
{
    /// <summary>The name errors give.</summary>
    public const string Key = "brainfuse";

    /// <summary>The mixes of this step and the batch with them (its views' tensors are new; targets and coordinates are the batch's).</summary>
    public (BrainFuseBatch Mixes, Batch Mixed) Mix(Batch batch, Generator generator)
    {
        var mixes = BrainFuseBatch.Draw(Mixer, batch.Images.cpu(), batch.Metas, Parts, Share, generator, Key);
        try
        {
            var views = batch.Views.Select(v => new BatchView(mixes.MixImages(v.Images), v.Targets, v.Coordinates)).ToArray();
            return (mixes, batch with { Views = views });
        }
        catch
        {
            mixes.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The consistency loss (a scalar, fp32): the mean over mixes and both views of 1 − cos(z_view[mix], Σ_k w̄_k·z_k),
    /// with z_k the objective's projection of part k's first view (original batch), computed without gradient, and
    /// w̄_k the part's mean weight.
    /// </summary>
    public Tensor Consistency(Objective objective, MedformerModel model, Batch original, BrainFuseBatch mixes, Tensor first, Tensor second, PretrainStep step)
    {
        using var scope = NewDisposeScope();
        Tensor target;
        using (no_grad())
        {
            long[] read = mixes.PartRows;
            var index = tensor(read);
            var images = original.Images.index_select(0, index).to(first.device);
            var projected = objective.Project(model, images, [.. read.Select(i => original.Metas[(int)i])], step).to(ScalarType.Float32);
            var perRow = zeros([original.Count, projected.shape[1]], dtype: ScalarType.Float32, device: projected.device)
                .index_copy(0, index.to(projected.device), projected);
            target = mixes.Combine(perRow).detach();
        }
        var rows = tensor(mixes.Rows, device: first.device);
        Tensor Term(Tensor z) => 1 - nn.functional.cosine_similarity(z.index_select(0, rows).to(ScalarType.Float32), target, dim: 1);
        return scope.MoveToOuter((Term(first) + Term(second)).mean() / 2);
    }
}
