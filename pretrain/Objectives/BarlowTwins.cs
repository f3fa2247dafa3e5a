using Medformer.Datasets;
using Medformer.Datasets.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// Barlow Twins (Zbontar et al., 2021): the cross-correlation of the two views' standardised projections is pushed
/// to the identity: invariance on the diagonal, redundancy reduction off it, weighted by λ.
/// </summary>
public sealed class BarlowTwins : Objective
{
    private readonly AttentionPool pool;
    private readonly Projector projector;
    private readonly double lambda;

    public BarlowTwins(int dim, double lambda = 0.005, int projectionDim = 256) : base("barlow")
    {
        if (!(lambda >= 0)) throw new ArgumentException($"lambda {lambda} must not be negative");
        this.lambda = lambda;
        pool = new AttentionPool(dim);
        projector = new Projector(dim, projectionDim, projectionDim, layers: 3);
        RegisterComponents();
    }

    public override int Views => 2;

    public override bool MixesViews => true;

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step)
    {
        var (loss, first, second) = LossAndProjections(model, batch, step);
        first.Dispose();
        second.Dispose();
        return loss;
    }

    public override (Tensor Loss, Tensor First, Tensor Second) LossAndProjections(MedformerModel model, Batch batch, PretrainStep step)
    {
        if (batch.Views.Count < 2) throw new ArgumentException("barlow needs two views of each sample from the loader");
        using var scope = NewDisposeScope();
        int n = batch.Count;
        var keys = Keys(batch);
        var both = step.Cast(cat([batch.Views[0].Images, batch.Views[1].Images]));
        var h = pool.call(model, model.forward(both, [.. keys, .. keys]));                            // [2N,d]
        // The projector's BatchNorm sees each view's batch on its own, as in the paper's two branches.
        var (z1, z2) = (projector.call(h[..n]), projector.call(h[n..]));                             // [N,D] each
        var loss = Losses.BarlowTwins(z1, z2, lambda, step.AllReduceSum);
        return (scope.MoveToOuter(loss), scope.MoveToOuter(z1), scope.MoveToOuter(z2));
    }

    public override Tensor Project(MedformerModel model, Tensor images, IReadOnlyList<SampleMeta> metas, PretrainStep step)
    {
        using var scope = NewDisposeScope();
        var keys = metas.Select(m => new LatentKey(m.Organ, m.Modality, Task)).ToList();
        return scope.MoveToOuter(projector.call(pool.call(model, model.forward(step.Cast(images), keys))));
    }
}
