using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// PixPro (Xie et al., 2021, "Propagate Yourself"): pixel-level contrast between two views. Position queries at the
/// token grid read dense features from the latents; a pixel propagation module smooths each view's features over
/// similar pixels; each propagated feature must agree with the momentum target's feature at every pixel of the
/// other view that shows a nearby point of the original image (closer than <c>threshold</c> feature-cell
/// diagonals, PixPro's 0.7). Plus PixPro+'s instance term: BYOL on the views' mean-pooled dense features,
/// weighted by <c>instanceWeight</c>.
/// </summary>
public sealed class PixPro : Objective
{
    private readonly Dense dense;
    private readonly Linear propagation;
    private readonly Projector instance_predictor;
    private readonly int dim, projectionDim;
    private readonly double threshold, gamma, instanceWeight;

    public PixPro(int dim, double threshold = 0.7, double gamma = 2, int projectionDim = 128, double instanceWeight = 1.0) : base("pixpro")
    {
        if (!(threshold > 0) || !(gamma > 0) || !(instanceWeight >= 0))
            throw new ArgumentException($"pixpro: threshold {threshold} and gamma {gamma} must be positive, instance_weight {instanceWeight} not negative");
        this.dim = dim;
        this.projectionDim = projectionDim;
        this.threshold = threshold;
        this.gamma = gamma;
        this.instanceWeight = instanceWeight;
        dense = new Dense(dim, projectionDim);
        propagation = nn.Linear(projectionDim, projectionDim);
        instance_predictor = new Projector(projectionDim, dim, projectionDim);
        RegisterComponents();
    }

    public override int Views => 2;

    public override bool TrackCoordinates => true;

    public override nn.Module? TargetHead => dense;

    public override nn.Module? CreateTargetHead() => new Dense(dim, projectionDim);

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step)
    {
        if (batch.Views.Count < 2 || batch.Views.Any(v => v.Coordinates is null))
            throw new ArgumentException("pixpro needs two views carrying their pixels' original coordinates from the loader");
        var target = step.Target ?? throw new InvalidOperationException("pixpro needs the momentum target network");
        using var scope = NewDisposeScope();
        int n = batch.Count;
        var images = cat([batch.Views[0].Images, batch.Views[1].Images]);
        var both = step.Cast(images);
        var keys = Keys(batch);
        IReadOnlyList<LatentKey> keys2 = [.. keys, .. keys];
        var grid = model.TokenGrid(images.shape);
        var x = dense.call(model, model.forward(both, keys2), grid);                                   // [2N,Q,D]
        var y = Losses.PixelPropagation(x, propagation.call(x), gamma);                                // [2N,Q,D]
        Tensor xt;
        using (torch.no_grad())
            xt = ((Dense)target.Head(Task)).call(target.Model, target.Model.forward(both, keys2), grid).detach();

        var (c1, c2) = (CellCoordinates(batch.Views[0].Coordinates!, grid), CellCoordinates(batch.Views[1].Coordinates!, grid)); // [N,A,Q]
        // Distances in units of the larger feature-cell diagonal of the two views, per sample (as PixPro normalises).
        var diagonal = maximum(CellDiagonal(batch.Views[0].Coordinates!, grid), CellDiagonal(batch.Views[1].Coordinates!, grid)); // [N]
        var scale = diagonal.view(-1, 1, 1);
        var positives = PixelPairs.PositiveBatch(c1 / scale, c2 / scale, threshold);                       // [N,Q1,Q2]
        var pixel = (Losses.PixelContrast(y[..n].to(ScalarType.Float32), xt[n..].to(ScalarType.Float32), positives, step.AllReduceSum)
                   + Losses.PixelContrast(y[n..].to(ScalarType.Float32), xt[..n].to(ScalarType.Float32), positives.transpose(1, 2), step.AllReduceSum)) / 2;
        if (instanceWeight == 0) return scope.MoveToOuter(pixel);
        var p = instance_predictor.call(x.mean([1]));                                                  // [2N,D]
        var z = xt.mean([1]);
        var instance = (Losses.Byol(p[..n], z[n..]) + Losses.Byol(p[n..], z[..n])) / 2;
        return scope.MoveToOuter(pixel + instanceWeight * instance);
    }

    /// <summary>A view's coordinates [N,A,…pixels] averaged over each token's patch → [N,A,Q], the cells' centres in the original image.</summary>
    static Tensor CellCoordinates(Tensor coordinates, long[] grid)
    {
        long patch = coordinates.shape[2] / grid[0];
        var pooled = grid.Length == 2
            ? F.avg_pool2d(coordinates, [patch, patch], [patch, patch])
            : F.avg_pool3d(coordinates, [patch, patch, patch], [patch, patch, patch]);
        return pooled.flatten(2);
    }

    /// <summary>The diagonal of one feature cell in original pixels, per sample: ‖centre(1,1,…) − centre(0,0,…)‖.</summary>
    static Tensor CellDiagonal(Tensor coordinates, long[] grid)
    {
        if (grid.Any(g => g < 2)) return full(coordinates.shape[0], (double)coordinates.shape[2] / grid[0], device: coordinates.device);
        var cells = CellCoordinates(coordinates, grid);                                                // [N,A,Q]
        long index = 0, stride = 1;                                                                    // cell (1,1[,1]), row-major
        for (int a = grid.Length - 1; a >= 0; a--)
        {
            index += stride;
            stride *= grid[a];
        }
        return (cells[.., .., index] - cells[.., .., 0]).pow(2).sum(1).sqrt().clamp_min(1e-3);
    }

    /// <summary>Dense features: position queries at the token grid read the latents; a per-pixel MLP projects them: [B,N,d] → [B,Q,D].</summary>
    internal sealed class Dense : nn.Module<MedformerModel, Tensor, long[], Tensor>
    {
        private readonly Projector projector;

        public Dense(int dim, int projectionDim) : base(nameof(Dense))
        {
            projector = new Projector(dim, dim, projectionDim, batchNorm: false);
            RegisterComponents();
        }

        public override Tensor forward(MedformerModel model, Tensor latents, long[] grid)
        {
            using var scope = NewDisposeScope();
            var queries = model.PositionQueries(grid).to(latents.dtype);
            return scope.MoveToOuter(projector.call(model.Decode(latents, queries)));
        }
    }
}
