using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// The MLP of the contrastive and distillation objectives: (Linear → norm → ReLU) × (layers − 1) → Linear, on
/// [N,d] or [B,Q,d]. BatchNorm (SimCLR, BYOL, Barlow Twins) normalises over every row in fp32 whatever the compute
/// dtype; LayerNorm suits dense features (PixPro). With <see cref="AllReduceSum"/> set (data parallel), BatchNorm
/// in training takes its statistics over every rank's rows (PyTorch's SyncBatchNorm), so the projection of a
/// global batch split over ranks is the projection of the whole batch.
/// </summary>
public sealed class Projector : nn.Module<Tensor, Tensor>
{
    private readonly ModuleList<Linear> layers;
    private readonly ModuleList<nn.Module<Tensor, Tensor>> norms;
    private readonly bool batchNorm;

    public Projector(int input, int hidden, int output, int layers = 2, bool batchNorm = true) : base(nameof(Projector))
    {
        if (layers < 1) throw new ArgumentException($"a projector needs at least one layer, not {layers}");
        this.batchNorm = batchNorm;
        var linears = new List<Linear>();
        var normalisers = new List<nn.Module<Tensor, Tensor>>();
        for (int i = 0; i < layers; i++)
        {
            int from = i == 0 ? input : hidden, to = i == layers - 1 ? output : hidden;
            linears.Add(nn.Linear(from, to));
            if (i < layers - 1) normalisers.Add(batchNorm ? nn.BatchNorm1d(to) : nn.LayerNorm(to));
        }
        this.layers = nn.ModuleList(linears.ToArray());
        norms = nn.ModuleList(normalisers.ToArray());
        RegisterComponents();
    }

    /// <summary>A sum over ranks with gradient (<see cref="Training.StepContext.AllReduceSum"/>); null: statistics over this process's rows.</summary>
    public Func<Tensor, Tensor>? AllReduceSum { get; set; }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long[] shape = x.shape;
        x = x.reshape(-1, shape[^1]);
        for (int i = 0; i < layers.Count; i++)
        {
            x = layers[i].call(x);
            if (i == layers.Count - 1) break;
            var dtype = x.dtype;
            x = !batchNorm ? norms[i].call(x)
                : AllReduceSum is { } reduce && norms[i].training ? SyncBatchNorm((BatchNorm1d)norms[i], x.to(ScalarType.Float32), reduce).to(dtype)
                : norms[i].call(x.to(ScalarType.Float32)).to(dtype);
            x = nn.functional.relu(x);
        }
        return scope.MoveToOuter(x.reshape([.. shape[..^1], -1]));
    }

    /// <summary>
    /// BatchNorm1d in training mode over the rows of every rank: mean and biased variance of the global batch for
    /// the output, unbiased variance for the running estimate. Moments are taken about the global mean without
    /// gradient (the result does not depend on the shift, so the gradient is exact), as Losses.BarlowTwins does.
    /// </summary>
    static Tensor SyncBatchNorm(BatchNorm1d norm, Tensor x, Func<Tensor, Tensor> reduce)
    {
        using var scope = NewDisposeScope();
        long c = x.shape[1];
        var first = reduce(cat([x.sum(0L), full(1, (double)x.shape[0], dtype: x.dtype, device: x.device)]).detach()).detach();
        var count = first[c];
        var shift = first[..(int)c] / count;
        var y = x - shift;
        var moments = reduce(cat([y.sum(0L), y.square().sum(0L)]));
        var mean = moments[..(int)c] / count;
        var variance = (moments[(int)c..] / count - mean.square()).clamp_min(0);
        var output = (y - mean) / (variance + norm.eps).sqrt();
        if (norm.affine) output = output * norm.weight + norm.bias!;
        if (norm.track_running_stats && norm.running_mean is { } runningMean && norm.running_var is { } runningVar)
            using (torch.no_grad())
            {
                double momentum = norm.momentum ?? 0.1;
                double rows = count.item<float>();
                runningMean.mul_(1 - momentum).add_((shift + mean).to(runningMean.dtype), alpha: momentum);
                runningVar.mul_(1 - momentum).add_((variance * (rows / Math.Max(rows - 1, 1))).to(runningVar.dtype), alpha: momentum);
                norm.num_batches_tracked?.add_(1);
            }
        return scope.MoveToOuter(output);
    }
}
