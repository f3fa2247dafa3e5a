using Medformer.Datasets;
using Medformer.Datasets.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// SimCLR (Chen et al., 2020): two augmented views of each image, a pooled representation, a projection MLP, and
/// the NT-Xent loss over the 2N views at a temperature: each view must pick its twin out of the batch.
/// </summary>
public sealed class SimClr : Objective
{
    private readonly AttentionPool pool;
    private readonly Projector projector;
    private readonly double temperature;

    public SimClr(int dim, double temperature = 0.2, int projectionDim = 128) : base("simclr")
    {
        if (!(temperature > 0)) throw new ArgumentException($"temperature {temperature} must be positive");
        this.temperature = temperature;
        pool = new AttentionPool(dim);
        projector = new Projector(dim, dim, projectionDim);
        RegisterComponents();
    }

    public override int Views => 2;

    public override bool MixesViews => true;

    /// <summary>Uniform similarities: each view picks its twin among the other 2N − 1 views of every rank.</summary>
    public override double? ChanceLoss(Batch batch, PretrainStep step)
    {
        long views = 2 * batch.Count;
        if (step.Gather is { } gather)
        {
            using var count = torch.ones(batch.Count, device: batch.Images.device);
            using var all = gather(count);
            views = 2 * all.shape[0];
        }
        return Math.Log(views - 1);
    }

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step)
    {
        var (loss, first, second) = LossAndProjections(model, batch, step);
        first.Dispose();
        second.Dispose();
        return loss;
    }

    public override (Tensor Loss, Tensor First, Tensor Second) LossAndProjections(MedformerModel model, Batch batch, PretrainStep step)
    {
        if (batch.Views.Count < 2) throw new ArgumentException("simclr needs two views of each sample from the loader");
        using var scope = NewDisposeScope();
        long n = batch.Count;
        var both = cat([batch.Views[0].Images, batch.Views[1].Images]);                              // [2N,C,…]
        var keys = Keys(batch);
        var z = projector.call(pool.call(model, model.forward(step.Cast(both), [.. keys, .. keys]))); // [2N,D]
        var (z1, z2) = (z[..(int)n], z[(int)n..]);
        var loss = Losses.NtXent(z1, z2, temperature, step.Gather, step.Rank);
        return (scope.MoveToOuter(loss), scope.MoveToOuter(z1), scope.MoveToOuter(z2));
    }

    public override Tensor Project(MedformerModel model, Tensor images, IReadOnlyList<SampleMeta> metas, PretrainStep step)
    {
        using var scope = NewDisposeScope();
        var keys = metas.Select(m => new LatentKey(m.Organ, m.Modality, Task)).ToList();
        return scope.MoveToOuter(projector.call(pool.call(model, model.forward(step.Cast(images), keys))));
    }
}
