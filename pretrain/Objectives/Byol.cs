using Medformer.Datasets.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// BYOL (Grill et al., 2020): the online network (encoder, pooler, projector, predictor) predicts the target
/// network's projection of the other view; the target is a momentum average of the online encoder, pooler and
/// projector (<see cref="MomentumTarget"/>). Symmetric: both views take each role.
/// </summary>
public sealed class Byol : Objective
{
    private readonly Embedding embedding;
    private readonly Projector predictor;
    private readonly int dim, projectionDim;

    public Byol(int dim, int projectionDim = 128) : base("byol")
    {
        this.dim = dim;
        this.projectionDim = projectionDim;
        embedding = new Embedding(dim, projectionDim);
        predictor = new Projector(projectionDim, dim, projectionDim);
        RegisterComponents();
    }

    public override int Views => 2;

    public override nn.Module? TargetHead => embedding;

    public override nn.Module? CreateTargetHead() => new Embedding(dim, projectionDim);

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step)
    {
        if (batch.Views.Count < 2) throw new ArgumentException("byol needs two views of each sample from the loader");
        var target = step.Target ?? throw new InvalidOperationException("byol needs the momentum target network");
        using var scope = NewDisposeScope();
        int n = batch.Count;
        var both = step.Cast(cat([batch.Views[0].Images, batch.Views[1].Images]));
        var keys = Keys(batch);
        IReadOnlyList<LatentKey> keys2 = [.. keys, .. keys];
        var p = predictor.call(embedding.call(model, model.forward(both, keys2)));                     // [2N,D]
        Tensor z;
        using (torch.no_grad())
            z = ((Embedding)target.Head(Task)).call(target.Model, target.Model.forward(both, keys2)).detach();
        // View 1's prediction meets view 2's target and the other way round.
        var loss = (Losses.Byol(p[..n], z[n..]) + Losses.Byol(p[n..], z[..n])) / 2;
        return scope.MoveToOuter(loss);
    }

    /// <summary>AttentionPool and projector: what the target network mirrors.</summary>
    internal sealed class Embedding : nn.Module<MedformerModel, Tensor, Tensor>
    {
        private readonly AttentionPool pool;
        private readonly Projector projector;

        public Embedding(int dim, int projectionDim) : base(nameof(Embedding))
        {
            pool = new AttentionPool(dim);
            projector = new Projector(dim, dim, projectionDim);
            RegisterComponents();
        }

        public override Tensor forward(MedformerModel model, Tensor latents)
        {
            using var scope = NewDisposeScope();
            return scope.MoveToOuter(projector.call(pool.call(model, latents)));
        }
    }
}
