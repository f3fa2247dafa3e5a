using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>A <see cref="AttentionPool"/> and a linear layer: latents [B,N,d] → logits [B,classes].</summary>
public sealed class PretextHead : nn.Module<MedformerModel, Tensor, Tensor>
{
    private readonly AttentionPool pool;
    private readonly Linear fc;

    public PretextHead(int dim, int classes) : base(nameof(PretextHead))
    {
        pool = new AttentionPool(dim);
        fc = nn.Linear(dim, classes);
        RegisterComponents();
    }

    /// <summary>The final layer, whose per-sample gradients EDBA reads.</summary>
    public Linear Output => fc;

    public override Tensor forward(MedformerModel model, Tensor latents)
    {
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(fc.call(pool.call(model, latents)));
    }
}
