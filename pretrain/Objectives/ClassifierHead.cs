using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>A <see cref="Pooler"/> and a linear layer: latents [B,N,d] → logits [B,classes].</summary>
public sealed class ClassifierHead : nn.Module<MedformerModel, Tensor, Tensor>
{
    private readonly Pooler pool;
    private readonly Linear fc;

    public ClassifierHead(int dim, int classes) : base(nameof(ClassifierHead))
    {
        pool = new Pooler(dim);
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
