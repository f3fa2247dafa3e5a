using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// The MLP of the contrastive and distillation objectives: (Linear → norm → ReLU) × (layers − 1) → Linear, on
/// [N,d] or [B,Q,d]. BatchNorm (SimCLR, BYOL, Barlow Twins) normalises over every row in fp32 whatever the compute
/// dtype; LayerNorm suits dense features (PixPro).
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
            x = batchNorm ? norms[i].call(x.to(ScalarType.Float32)).to(dtype) : norms[i].call(x);
            x = nn.functional.relu(x);
        }
        return scope.MoveToOuter(x.reshape([.. shape[..^1], -1]));
    }
}
