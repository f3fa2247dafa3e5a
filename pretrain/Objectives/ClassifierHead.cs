using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>A learned query reads the latents; LayerNorm and a linear layer turn its output into logits [B,classes].</summary>
public sealed class ClassifierHead : nn.Module<Medformer, Tensor, Tensor>
{
    private readonly Parameter query;
    private readonly LayerNorm norm;
    private readonly Linear fc;

    public ClassifierHead(int dim, int classes) : base(nameof(ClassifierHead))
    {
        query = Objective.Query(1, dim);
        norm = nn.LayerNorm(dim);
        fc = nn.Linear(dim, classes);
        RegisterComponents();
    }

    /// <summary>latents [B,N,d] → logits [B,classes] (in the model's dtype).</summary>
    public override Tensor forward(Medformer model, Tensor latents)
    {
        using var scope = NewDisposeScope();
        var pooled = model.Decode(latents, query.to(latents.dtype)).squeeze(1);   // [B,d]
        return scope.MoveToOuter(fc.call(norm.call(pooled)));
    }
}
