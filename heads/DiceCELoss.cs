using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>
/// Dice + cross-entropy for segmentation, with the semantics of MONAI's
/// <c>DiceCELoss(to_onehot_y=True, softmax=True)</c> and its other defaults: the Dice term takes the softmax of the
/// logits against the one-hot labels, per sample and class 1 − (2·Σ p·g + smooth_nr) / (Σ p + Σ g + smooth_dr) over
/// the pixels (smooth_nr = smooth_dr = 1e-5, background included, not squared), averaged over classes and samples;
/// the cross-entropy term is the mean over pixels; the loss is λ_dice·Dice + λ_ce·CE (1 and 1).
/// </summary>
public sealed record DiceCELoss(double LambdaDice = 1.0, double LambdaCe = 1.0, double SmoothNr = 1e-5, double SmoothDr = 1e-5, bool IncludeBackground = true)
{
    /// <summary>logits [B,K,…] (fp32), labels [B,1,…] or [B,…] (int64 classes 0..K−1) → the scalar loss.</summary>
    public Tensor Loss(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(PerSample(logits, labels).mean());
    }

    /// <summary>The loss of each sample [B]; their mean is <see cref="Loss"/> (every sample has the same pixel count).</summary>
    public Tensor PerSample(Tensor logits, Tensor labels)
    {
        using var scope = NewDisposeScope();
        labels = Squeeze(logits, labels);
        int classes = (int)logits.shape[1];
        var reduce = Enumerable.Range(2, (int)logits.dim() - 2).Select(a => (long)a).ToArray();
        var probabilities = logits.softmax(1);
        var onehot = F.one_hot(labels, classes).movedim([-1L], [1L]).to(probabilities.dtype);   // [B,K,…]
        if (!IncludeBackground)
        {
            probabilities = probabilities.narrow(1L, 1L, classes - 1L);
            onehot = onehot.narrow(1L, 1L, classes - 1L);
        }
        var intersection = (probabilities * onehot).sum(reduce);                            // [B,K]
        var denominator = probabilities.sum(reduce) + onehot.sum(reduce);
        var dice = 1.0 - (2.0 * intersection + SmoothNr) / (denominator + SmoothDr);
        var ce = F.cross_entropy(logits, labels, reduction: nn.Reduction.None).flatten(1).mean([1]);
        return scope.MoveToOuter(LambdaDice * dice.mean([1]) + LambdaCe * ce);
    }

    /// <summary>
    /// The loss of each sample [B] against soft maps [B,K,…] (class probabilities per pixel, e.g. BrainFuse's mixed
    /// one-hot maps): the Dice term with the soft maps in place of the one-hot labels, the cross-entropy −Σ_k t_k·log p_k
    /// averaged over pixels. With one-hot maps it equals <see cref="PerSample"/>.
    /// </summary>
    public Tensor PerSampleSoft(Tensor logits, Tensor targets)
    {
        using var scope = NewDisposeScope();
        if (logits.dim() is not (4 or 5) || !targets.shape.SequenceEqual(logits.shape))
            throw new ArgumentException($"soft segmentation targets [{string.Join(",", targets.shape)}] must match the " +
                $"logits [{string.Join(",", logits.shape)}]");
        int classes = (int)logits.shape[1];
        var reduce = Enumerable.Range(2, (int)logits.dim() - 2).Select(a => (long)a).ToArray();
        var soft = targets.to(logits.dtype).to(logits.device);
        var probabilities = logits.softmax(1);
        var ce = -(soft * logits.log_softmax(1)).sum([1]).flatten(1).mean([1]);
        if (!IncludeBackground)
        {
            probabilities = probabilities.narrow(1L, 1L, classes - 1L);
            soft = soft.narrow(1L, 1L, classes - 1L);
        }
        var intersection = (probabilities * soft).sum(reduce);
        var denominator = probabilities.sum(reduce) + soft.sum(reduce);
        var dice = 1.0 - (2.0 * intersection + SmoothNr) / (denominator + SmoothDr);
        return scope.MoveToOuter(LambdaDice * dice.mean([1]) + LambdaCe * ce);
    }

    static Tensor Squeeze(Tensor logits, Tensor labels)
    {
        if (logits.dim() is not (4 or 5))
            throw new ArgumentException($"segmentation logits must be [B,K,H,W] or [B,K,D,H,W], not [{string.Join(",", logits.shape)}]");
        if (labels.dim() == logits.dim() && labels.shape[1] == 1) labels = labels.squeeze(1);
        if (!labels.shape.SequenceEqual(logits.shape.Where((_, i) => i != 1)))
            throw new ArgumentException($"labels [{string.Join(",", labels.shape)}] do not match logits [{string.Join(",", logits.shape)}]: expected " +
                "[B,1,…] or [B,…] on the logits' grid");
        return labels.to(ScalarType.Int64);
    }
}
