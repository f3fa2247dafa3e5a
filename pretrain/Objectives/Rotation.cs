using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// Rotation prediction (Gidaris et al., 2018): each image is turned by 0, 90, 180 or 270° in its H×W plane
/// (a volume about its depth axis), and the model names the turn (4-way cross-entropy).
/// </summary>
public sealed class Rotation : Objective
{
    private readonly PretextHead head;

    public Rotation(int dim) : base("rotation")
    {
        head = new PretextHead(dim, 4);
        RegisterComponents();
    }

    public override bool PerSample => true;

    public override IReadOnlyList<Linear> LastLayers => [head.Output];

    public override double? ChanceLoss(Batch batch, PretrainStep step) => Math.Log(4);

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, reduction: nn.Reduction.Mean);

    public override Tensor PerSampleLoss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, reduction: nn.Reduction.None);

    Tensor Loss(MedformerModel model, Batch batch, PretrainStep step, nn.Reduction reduction)
    {
        using var scope = NewDisposeScope();
        var x = batch.Images;
        long b = x.shape[0], h = x.shape[^2], w = x.shape[^1];
        if (h != w) throw new ArgumentException($"rotation needs square images (H = W), not {h}×{w} ({batch.Metas[0]})");
        var turns = randint(0, 4, [b], generator: step.Generator, device: x.device);                            // [B]
        var plane = (x.dim() - 2, x.dim() - 1);
        var all = stack([x, x.rot90(1, plane), x.rot90(2, plane), x.rot90(3, plane)]);                         // [4,B,C,…]
        var rotated = all[turns, arange(b, device: x.device)];                                                 // [B,C,…]
        var logits = head.call(model, model.forward(step.Cast(rotated), Keys(batch)));
        return scope.MoveToOuter(F.cross_entropy(logits.to(ScalarType.Float32), turns, reduction: reduction));
    }
}
