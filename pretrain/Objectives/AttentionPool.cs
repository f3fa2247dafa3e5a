using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>A learned query reads the latents (Perceiver IO's classification read-out) and LayerNorm settles it: [B,N,d] → [B,d].</summary>
public sealed class AttentionPool : nn.Module<MedformerModel, Tensor, Tensor>, Runtime.INoWeightDecay
{
    private readonly Parameter query;
    private readonly LayerNorm norm;

    public AttentionPool(int dim) : base(nameof(AttentionPool))
    {
        query = Objective.Query(1, dim);
        norm = nn.LayerNorm(dim);
        RegisterComponents();
    }

    public IEnumerable<string> NoWeightDecay() => ["query"];

    public override Tensor forward(MedformerModel model, Tensor latents)
    {
        using var scope = NewDisposeScope();
        var pooled = model.Decode(latents, query.to(latents.dtype)).squeeze(1);
        return scope.MoveToOuter(norm.call(pooled));
    }
}
