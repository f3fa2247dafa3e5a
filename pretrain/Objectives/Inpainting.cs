using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// Masked patch inpainting, as MAE (He et al., 2022) but through Perceiver IO: a random <c>maskRatio</c> of the
/// patch tokens is dropped before the encoder, the latents read only the visible ones, and patch queries (Fourier
/// features of the masked patches' centres plus a learned mask token) read the latents to reconstruct those
/// patches' pixels. The loss is the mean squared error on masked patches, against per-patch normalised pixels
/// when <c>normalizePixels</c> (MAE's variant for 16×16 natural-image patches). Off by default: on 4×4 patches of
/// noisy medical images the normalised target is mostly noise, and the loss stayed at its trivial value (P−1)/P on
/// the phantom corpus, where raw pixels fell from 0.11 to 0.04 in 400 steps. On clean images it pays: on
/// Fashion-MNIST it lifted the frozen probe at 1% of the labels from 69.9 to 74.9% (3 seeds, same budget). 2D and 3D alike.
/// </summary>
public sealed class Inpainting : Objective
{
    private readonly Parameter mask_token;
    private readonly LayerNorm norm;
    private readonly Linear pixels_2d;
    private readonly Linear pixels_3d;
    private readonly double maskRatio;
    private readonly bool normalizePixels;
    private readonly int channels, patch2d, patch3d;

    public Inpainting(MedformerConfig config, double maskRatio = 0.75, bool normalizePixels = false) : base("inpainting")
    {
        if (maskRatio is <= 0 or >= 1) throw new ArgumentException($"mask ratio {maskRatio} must be in (0, 1)");
        this.maskRatio = maskRatio;
        this.normalizePixels = normalizePixels;
        channels = config.InChannels;
        patch2d = config.PatchSize2d;
        patch3d = config.PatchSize3d;
        mask_token = Query(1, config.Dim);
        norm = nn.LayerNorm(config.Dim);
        pixels_2d = nn.Linear(config.Dim, patch2d * patch2d * channels);
        pixels_3d = nn.Linear(config.Dim, patch3d * patch3d * patch3d * channels);
        RegisterComponents();
    }

    public double MaskRatio => maskRatio;

    public override bool PerSample => true;

    public override IReadOnlyList<Linear> LastLayers => [pixels_2d, pixels_3d];

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, perSample: false);

    public override Tensor PerSampleLoss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, perSample: true);

    /// <summary>
    /// The best constant prediction (R² = 0): the batch's mean pixel for raw pixels, zero for normalised patches (whose
    /// mean is zero), scored by the loss's own formula on every patch of the batch.
    /// </summary>
    public override double? ChanceLoss(Batch batch, PretrainStep step)
    {
        using var scope = NewDisposeScope();
        var x = batch.Images.to(ScalarType.Float32);
        var target = Losses.Patchify(x, MedformerModel.DimensionalityOf(x).IsVolume ? patch3d : patch2d);      // [B,T,P]
        var guess = normalizePixels ? zeros_like(target) : target.mean().expand_as(target);
        var all = ones(target.shape[0], target.shape[1], dtype: ScalarType.Bool, device: x.device);
        return Losses.MaskedReconstruction(guess, target, all, normalizePixels).item<float>();
    }

    Tensor Loss(MedformerModel model, Batch batch, PretrainStep step, bool perSample)
    {
        using var scope = NewDisposeScope();
        var x = batch.Images;
        var dimensionality = MedformerModel.DimensionalityOf(x);
        bool volume = dimensionality.IsVolume;
        if (x.shape[1] == 1 && channels > 1) x = x.expand([x.shape[0], channels, .. x.shape[2..]]);  // as the tokenizer sees it
        var tokens = model.Tokenize(step.Cast(x));                                                    // [B,T,d]
        long b = tokens.shape[0], t = tokens.shape[1];
        var masked = Losses.RandomMask(b, t, maskRatio, step.Generator).to(x.device);                 // [B,T] true = hidden
        var (visible, _) = Losses.KeepVisible(tokens, masked.logical_not());                          // [B,T_keep,d]
        var latents = model.Encode(visible, Keys(batch), dimensionality);

        var queries = model.PositionQueries(model.TokenGrid(x.shape)) + mask_token.to(tokens.dtype); // [1,T,d]
        var (hidden, hiddenIndex) = Losses.KeepVisible(queries.expand(b, -1, -1), masked);            // [B,T_mask,d]
        var predicted = (volume ? pixels_3d : pixels_2d).call(norm.call(model.Decode(latents, hidden))); // [B,T_mask,P]

        var target = Losses.Patchify(x.to(ScalarType.Float32), volume ? patch3d : patch2d);           // [B,T,P]
        var hiddenTarget = target.gather(1, hiddenIndex.unsqueeze(-1).expand(-1, -1, target.shape[2]));
        var all = ones(hiddenIndex.shape, dtype: ScalarType.Bool, device: x.device);
        return scope.MoveToOuter(Losses.MaskedReconstruction(predicted.to(ScalarType.Float32), hiddenTarget, all, normalizePixels, perSample));
    }
}
