using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// The image-to-image loss: <see cref="L1"/>·mean|ŷ − y| + <see cref="Mse"/>·mean(ŷ − y)² + <see cref="Ssim"/>·(1 − SSIM(ŷ, y)),
/// per sample, in fp32. SSIM (<see cref="Heads.Ssim"/>: Gaussian window 11, σ 1.5, K1 0.01, K2 0.03) takes
/// <see cref="DataRange"/>, or each target's max − min when it is null; it needs images of at least 11 pixels a side.
/// </summary>
public sealed record ImageLoss(double L1 = 1.0, double Mse = 0.0, double Ssim = 0.0, double? DataRange = null)
{
    public void Validate()
    {
        if (L1 < 0 || Mse < 0 || Ssim < 0 || L1 + Mse + Ssim <= 0)
            throw new ArgumentException($"image loss weights l1 {L1}, mse {Mse}, ssim {Ssim}: none negative, at least one positive");
        if (DataRange is { } range && !(range > 0)) throw new ArgumentException($"image loss: data range {range} must be positive");
    }

    /// <summary>predicted, target [B,C,…] → the loss of each sample [B] and its named parts (each [B]).</summary>
    public (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts) PerSample(Tensor predicted, Tensor target)
    {
        if (!predicted.shape.SequenceEqual(target.shape))
            throw new ArgumentException($"prediction [{string.Join(",", predicted.shape)}] and target [{string.Join(",", target.shape)}] differ in shape");
        using var scope = NewDisposeScope();
        predicted = predicted.to(ScalarType.Float32);
        target = target.to(ScalarType.Float32);
        var parts = new Dictionary<string, Tensor>();
        var difference = predicted - target;
        Tensor total = zeros(predicted.shape[0], device: predicted.device);
        if (L1 > 0) total = total + L1 * (parts["l1"] = difference.abs().flatten(1).mean([1]));
        if (Mse > 0) total = total + Mse * (parts["mse"] = difference.square().flatten(1).mean([1]));
        if (Ssim > 0)
        {
            var range = DataRange is { } r ? full(predicted.shape[0], r, device: predicted.device)
                : (target.flatten(1).amax([1]) - target.flatten(1).amin([1])).clamp_min(1e-6);
            total = total + Ssim * (parts["ssim_loss"] = 1 - Heads.Ssim.PerSample(predicted, target, range));
        }
        foreach (var part in parts.Values) scope.MoveToOuter(part);
        return (scope.MoveToOuter(total), parts);
    }
}
