using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// The losses of the self-supervised objectives (SimCLR, BYOL, Barlow Twins, PixPro, MAE) and MAE's token
/// bookkeeping, as pure functions over tensors. Losses compute in fp32 (bf16/fp16 inputs are upcast) unless every
/// floating input is fp64, then in fp64; they return a 0-dim tensor.
/// </summary>
/// <remarks>
/// Data parallel: a loss that takes a collective (<c>gather</c>, <c>allReduceSum</c>) expects one that carries
/// gradients as <c>torch.distributed.nn.functional</c>'s do: the backward of an all-gather or all-reduce sums the
/// incoming gradients over ranks. With that, every rank's backward gives the gradient of the sum of all ranks'
/// losses, and the trainer averaging gradients over ranks (as DDP does) optimises the mean of the ranks' losses:
/// the mean over the global batch for <see cref="NtXent"/>, the global-batch loss for <see cref="BarlowTwins"/>.
/// </remarks>
public static class Losses
{
    /// <summary>BatchNorm1d's default, used by <see cref="BarlowTwins"/>'s standardisation.</summary>
    public const double BarlowTwinsEps = 1e-5;

    /// <summary>MAE's epsilon inside the square root of the per-patch target normalisation.</summary>
    public const double PixelNormEps = 1e-6;

    /// <summary>
    /// SimCLR's NT-Xent over the 2N views: cosine similarities over <paramref name="temperature"/>; each of the 2N
    /// rows' positive is its other view, its negatives every other row (2N-2, or 2N·W-2 gathered over W ranks);
    /// the mean cross-entropy over the 2N local rows.
    /// </summary>
    /// <param name="z1">[N,D] first views' projections, not normalised.</param>
    /// <param name="z2">[N,D] second views' projections.</param>
    /// <param name="gather">
    /// An all-gather with gradient across ranks, called once on the local normalised rows [z1; z2] ([2N,D]); it
    /// must return every rank's [2N,D] block concatenated in rank order ([2N·W,D], the local block at rows
    /// rank·2N..), as <c>torch.cat(torch.distributed.nn.functional.all_gather(x))</c> does. Every rank must have
    /// the same N. Null: one process.
    /// </param>
    /// <param name="rank">This process's rank, which places its block in the gathered rows.</param>
    public static Tensor NtXent(Tensor z1, Tensor z2, double temperature, Func<Tensor, Tensor>? gather = null, int rank = 0)
    {
        RequireSameShape(nameof(NtXent), (nameof(z1), z1), (nameof(z2), z2), rank: 2);
        if (z1.shape[0] < 1) throw new ArgumentException($"{nameof(NtXent)}: z1 and z2 {Shape(z1)} have no rows");
        if (!(temperature > 0) || double.IsInfinity(temperature))
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, $"{nameof(NtXent)}: the temperature must be positive and finite");
        if (rank < 0) throw new ArgumentOutOfRangeException(nameof(rank), rank, $"{nameof(NtXent)}: the rank must be non-negative");
        var type = WorkType(nameof(NtXent), z1, z2);
        using var scope = NewDisposeScope();
        long n = z1.shape[0], rows = 2 * n;
        var local = F.normalize(cat([As(z1, type), As(z2, type)], 0), dim: -1);    // [2N,D]
        var all = gather is null ? local : gather(local);                             // [2N·W,D]
        if (all.dim() != 2 || all.shape[1] != local.shape[1] || all.shape[0] % rows != 0 || all.dtype != type)
            throw new ArgumentException($"{nameof(NtXent)}: gather turned {Shape(local)} {type} rows into {Shape(all)} {all.dtype}; expected [2N·W, " +
                $"{local.shape[1]}] {type}, whole blocks of {rows} rows");
        long world = all.shape[0] / rows;
        if (rank >= world)
            throw new ArgumentOutOfRangeException(nameof(rank), rank, $"{nameof(NtXent)}: rank {rank} is outside the {world} gathered blocks of {rows} rows");
        long offset = rank * rows;
        var logits = local.mm(all.t()) / temperature;                                  // [2N,2N·W]
        var index = arange(rows, dtype: ScalarType.Int64, device: local.device);
        var self = (index + offset).unsqueeze(1);
        var isSelf = arange(all.shape[0], dtype: ScalarType.Int64, device: local.device).unsqueeze(0).eq(self);
        logits = logits.masked_fill(isSelf, double.NegativeInfinity);
        var positive = (index + n).remainder(rows) + offset;
        return scope.MoveToOuter(F.cross_entropy(logits, positive));
    }

    /// <summary>BYOL's loss: the mean over rows of 2 - 2·cos(p, z).</summary>
    /// <param name="online">[N,D] the online network's predictions p.</param>
    /// <param name="target">[N,D] the target network's projections z (detached by the caller).</param>
    public static Tensor Byol(Tensor online, Tensor target)
    {
        RequireSameShape(nameof(Byol), (nameof(online), online), (nameof(target), target), rank: 2);
        var type = WorkType(nameof(Byol), online, target);
        using var scope = NewDisposeScope();
        var cosine = (F.normalize(As(online, type), dim: -1) * F.normalize(As(target, type), dim: -1)).sum(-1);
        return scope.MoveToOuter((2 - 2 * cosine).mean());
    }

    /// <summary>
    /// Barlow Twins: each of z1, z2 standardised along the batch (mean 0, variance 1, the biased variance plus
    /// <see cref="BarlowTwinsEps"/>, as BatchNorm1d without affine in training mode), c = z1ᵀz2 / N (D×D), and
    /// loss = Σᵢ (1 - cᵢᵢ)² + λ Σ_{i≠j} cᵢⱼ². Unscaled: an early release of the official code multiplied the loss by
    /// a --scale-loss factor, the current one does not; multiply in the objective if a recipe wants it.
    /// </summary>
    /// <param name="z1">[N,D] first views' projections.</param>
    /// <param name="z2">[N,D] second views' projections.</param>
    /// <param name="lambda">The off-diagonal weight (0.0051 in the paper for D = 8192).</param>
    /// <param name="allReduceSum">
    /// Sums a tensor over ranks, with gradient (its backward sums gradients over ranks); then the batch statistics
    /// and c are over the global batch, and every rank returns the same loss. It is called twice, on 1-D tensors
    /// (the second holds D² + 4D values). Null: one process.
    /// </param>
    public static Tensor BarlowTwins(Tensor z1, Tensor z2, double lambda, Func<Tensor, Tensor>? allReduceSum = null)
    {
        RequireSameShape(nameof(BarlowTwins), (nameof(z1), z1), (nameof(z2), z2), rank: 2);
        if (!double.IsFinite(lambda)) throw new ArgumentOutOfRangeException(nameof(lambda), lambda, $"{nameof(BarlowTwins)}: lambda must be finite");
        var type = WorkType(nameof(BarlowTwins), z1, z2);
        var reduce = allReduceSum ?? (t => t);
        using var scope = NewDisposeScope();
        var a = As(z1, type);
        var b = As(z2, type);
        long n = a.shape[0], d = a.shape[1];

        // The statistics are sums of per-row terms, so that one all-reduce makes them global. Raw moments would
        // cancel catastrophically when the mean is large against the spread, so they are taken about a shift: the
        // global mean without gradient (the loss does not depend on the shift, so its gradient is exact).
        var first = Reduce(reduce, cat([a.sum(0L), b.sum(0L), full(1, (double)n, dtype: type, device: a.device)]).detach(), 2 * d + 1).detach();
        var count = first[2 * d];
        var ya = a - first[..(int)d] / count;
        var yb = b - first[(int)d..(int)(2 * d)] / count;
        var moments = Reduce(reduce, cat([ya.sum(0L), yb.sum(0L), ya.square().sum(0L), yb.square().sum(0L), ya.t().mm(yb).flatten()]), d * d + 4 * d);
        var meanA = moments[..(int)d] / count;
        var meanB = moments[(int)d..(int)(2 * d)] / count;
        var varA = (moments[(int)(2 * d)..(int)(3 * d)] / count - meanA.square()).clamp_min(0);
        var varB = (moments[(int)(3 * d)..(int)(4 * d)] / count - meanB.square()).clamp_min(0);
        var covariance = moments[(int)(4 * d)..].view(d, d) / count - meanA.unsqueeze(1) * meanB.unsqueeze(0);
        var c = covariance / ((varA + BarlowTwinsEps).sqrt().unsqueeze(1) * (varB + BarlowTwinsEps).sqrt().unsqueeze(0));

        var onDiagonal = (1 - c.diagonal()).square().sum();
        // Past each diagonal element come the D off-diagonal elements before the next one.
        var offDiagonal = c.flatten()[1..].view(d - 1, d + 1)[.., ..(int)d].square().sum();
        return scope.MoveToOuter(onDiagonal + lambda * offDiagonal);
    }

    /// <summary>
    /// PixPro's pixel propagation module: sᵢⱼ = max(cos(xᵢ, xⱼ), 0)^γ and yᵢ = Σⱼ sᵢⱼ·g(xⱼ), within each sample.
    /// PixPro L2-normalises g(x) before propagating (pass it normalised to match) and adds 1e-6 to s when γ &lt; 1
    /// (we do not: with γ &lt; 1 the gradient at cos = 0 is infinite).
    /// </summary>
    /// <param name="features">[B,Q,D] the features x, one row per feature-grid cell.</param>
    /// <param name="transformed">[B,Q,E] g(x), the caller's linear or MLP transform of the same cells.</param>
    /// <param name="gamma">The sharpness exponent γ (2 in PixPro).</param>
    /// <returns>[B,Q,E] the propagated features y.</returns>
    public static Tensor PixelPropagation(Tensor features, Tensor transformed, double gamma)
    {
        RequireRank(nameof(PixelPropagation), nameof(features), features, 3);
        RequireRank(nameof(PixelPropagation), nameof(transformed), transformed, 3);
        if (transformed.shape[0] != features.shape[0] || transformed.shape[1] != features.shape[1])
            throw new ArgumentException($"{nameof(PixelPropagation)}: transformed {Shape(transformed)} does not match features {Shape(features)} in [B,Q]");
        if (!(gamma > 0) || double.IsInfinity(gamma))
            throw new ArgumentOutOfRangeException(nameof(gamma), gamma, $"{nameof(PixelPropagation)}: gamma must be positive and finite");
        var type = WorkType(nameof(PixelPropagation), features, transformed);
        using var scope = NewDisposeScope();
        var x = F.normalize(As(features, type), dim: -1);
        var similarity = x.bmm(x.transpose(1, 2)).clamp_min(0).pow(gamma);           // [B,Q,Q]
        return scope.MoveToOuter(similarity.bmm(As(transformed, type)));
    }

    /// <summary>
    /// PixPro's pixel-to-propagation consistency: loss = -(mean over every positive pair (b,i,j) of the batch of
    /// cos(yᵢ, x'ⱼ)). Each pair weighs the same, so a sample without positives adds nothing, and a batch without
    /// any gives 0 (with a gradient path, zero). PixPro instead averages per sample, then over the batch (samples
    /// without positives counting 0), and doubles: -2·mean_b(...). The two agree up to that factor when every
    /// sample has the same number of positive pairs.
    /// </summary>
    /// <param name="propagated">[B,Q1,D] y, propagated from one view.</param>
    /// <param name="target">[B,Q2,D] x', the momentum encoder's features of the other view (detached by the caller).</param>
    /// <param name="positives">[B,Q1,Q2] bool, from <see cref="Datasets.Transforms.PixelPairs.PositiveBatch"/>.</param>
    /// <param name="allReduceSum">
    /// Data parallel: a sum over ranks; then the mean is over the positive pairs of every rank's batch, scaled by the
    /// world size so that the ranks' losses average (as the trainer averages gradients) to the global-batch loss.
    /// Null: one process.
    /// </param>
    public static Tensor PixelContrast(Tensor propagated, Tensor target, Tensor positives, Func<Tensor, Tensor>? allReduceSum = null)
    {
        RequireRank(nameof(PixelContrast), nameof(propagated), propagated, 3);
        RequireRank(nameof(PixelContrast), nameof(target), target, 3);
        if (target.shape[0] != propagated.shape[0] || target.shape[2] != propagated.shape[2])
            throw new ArgumentException($"{nameof(PixelContrast)}: target {Shape(target)} does not match propagated {Shape(propagated)} in B or D");
        long[] pairs = [propagated.shape[0], propagated.shape[1], target.shape[1]];
        if (positives.dtype != ScalarType.Bool || !positives.shape.SequenceEqual(pairs))
            throw new ArgumentException($"{nameof(PixelContrast)}: positives is {Shape(positives)} {positives.dtype}; " +
                $"expected [{string.Join(", ", pairs)}] Bool");
        var type = WorkType(nameof(PixelContrast), propagated, target);
        using var scope = NewDisposeScope();
        var cosine = F.normalize(As(propagated, type), dim: -1).bmm(F.normalize(As(target, type), dim: -1).transpose(1, 2));
        var weight = positives.to(type);
        // clamp_min(1): no positives gives 0·(a sum over the graph) instead of 0/0, with no host synchronisation.
        var count = weight.sum().clamp_min(1);
        if (allReduceSum is not null)
        {
            var global = allReduceSum(stack([weight.sum(), ones([], dtype: type, device: weight.device)]).detach()).detach();   // [pairs, world]
            count = global[0].clamp_min(1) / global[1];
        }
        return scope.MoveToOuter(-(cosine * weight).sum() / count);
    }

    /// <summary>
    /// MAE's patchify: [B,C,H,W] → [B,T,p·p·C] or [B,C,D,H,W] → [B,T,p·p·p·C]. Tokens run row-major over the patch
    /// grid, slowest axis first, as the model's tokenizer (a convolution with stride p, then flatten(2).transpose(1,2))
    /// orders them; within a patch, pixels run (pd,) ph, pw, then channels last, as MAE's patchify.
    /// </summary>
    public static Tensor Patchify(Tensor images, int patch)
    {
        if (images.dim() is not (4 or 5))
            throw new ArgumentException($"{nameof(Patchify)}: images {Shape(images)} are neither [B,C,H,W] nor [B,C,D,H,W]");
        long[] spatial = images.shape[2..];
        long[] grid = GridOf(nameof(Patchify), $"images {Shape(images)}", spatial, patch);
        long b = images.shape[0], c = images.shape[1], p = patch;
        long tokens = grid.Aggregate(1L, (x, y) => x * y), values = spatial.Length == 2 ? p * p * c : p * p * p * c;
        using var scope = NewDisposeScope();
        Tensor result = spatial.Length == 2
            ? images.reshape(b, c, grid[0], p, grid[1], p).permute(0, 2, 4, 3, 5, 1).reshape(b, tokens, values)
            : images.reshape(b, c, grid[0], p, grid[1], p, grid[2], p).permute(0, 2, 4, 6, 3, 5, 7, 1).reshape(b, tokens, values);
        return scope.MoveToOuter(result);
    }

    /// <summary>The inverse of <see cref="Patchify"/>: [B,T,P] → <paramref name="imageShape"/>, [B,C,H,W] or [B,C,D,H,W].</summary>
    public static Tensor Unpatchify(Tensor patches, long[] imageShape, int patch)
    {
        ArgumentNullException.ThrowIfNull(imageShape);
        if (imageShape.Length is not (4 or 5) || imageShape.Any(s => s < 0))
            throw new ArgumentException($"{nameof(Unpatchify)}: image shape [{string.Join(", ", imageShape)}] is neither [B,C,H,W] nor [B,C,D,H,W]",
                nameof(imageShape));
        long[] spatial = imageShape[2..];
        long[] grid = GridOf(nameof(Unpatchify), $"image shape [{string.Join(", ", imageShape)}]", spatial, patch);
        long b = imageShape[0], c = imageShape[1], p = patch;
        long tokens = grid.Aggregate(1L, (x, y) => x * y), values = spatial.Length == 2 ? p * p * c : p * p * p * c;
        if (patches.dim() != 3 || patches.shape[0] != b || patches.shape[1] != tokens || patches.shape[2] != values)
            throw new ArgumentException($"{nameof(Unpatchify)}: patches {Shape(patches)} do not make image shape [{string.Join(", ", imageShape)}] with " +
                $"patch {patch}; expected [{b}, {tokens}, {values}]");
        using var scope = NewDisposeScope();
        Tensor result = spatial.Length == 2
            ? patches.reshape(b, grid[0], grid[1], p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(imageShape)
            : patches.reshape(b, grid[0], grid[1], grid[2], p, p, p, c).permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(imageShape);
        return scope.MoveToOuter(result);
    }

    /// <summary>
    /// MAE's loss: the mean over masked patches of the per-patch mean squared error. With
    /// <paramref name="normalizePixels"/> each target patch is first standardised by its own mean and unbiased
    /// variance: (t - mean) / sqrt(var + <see cref="PixelNormEps"/>), as MAE's norm_pix_loss. No masked patch: 0,
    /// with a gradient path.
    /// </summary>
    /// <param name="predicted">[B,T,P] the decoder's pixel predictions.</param>
    /// <param name="target">[B,T,P] <see cref="Patchify"/> of the images.</param>
    /// <param name="mask">[B,T] bool, true where a token was masked (to be reconstructed).</param>
    /// <param name="perSample">Each sample's mean over its masked patches [B] rather than the batch's scalar.</param>
    public static Tensor MaskedReconstruction(Tensor predicted, Tensor target, Tensor mask, bool normalizePixels = true, bool perSample = false)
    {
        RequireSameShape(nameof(MaskedReconstruction), (nameof(predicted), predicted), (nameof(target), target), rank: 3);
        if (mask.dtype != ScalarType.Bool || mask.dim() != 2 || mask.shape[0] != predicted.shape[0] || mask.shape[1] != predicted.shape[1])
            throw new ArgumentException($"{nameof(MaskedReconstruction)}: mask is {Shape(mask)} {mask.dtype}; expected " +
                $"[{predicted.shape[0]}, {predicted.shape[1]}] Bool");
        if (normalizePixels && predicted.shape[2] < 2)
            throw new ArgumentException($"{nameof(MaskedReconstruction)}: normalizePixels needs at least 2 values per patch for the unbiased " +
                $"variance; patches are {Shape(predicted)}");
        var type = WorkType(nameof(MaskedReconstruction), predicted, target);
        using var scope = NewDisposeScope();
        var t = As(target, type);
        if (normalizePixels)
            t = (t - t.mean([-1], keepdim: true)) / (t.var(-1, unbiased: true, keepdim: true) + PixelNormEps).sqrt();
        var perPatch = (As(predicted, type) - t).square().mean([-1]);                 // [B,T]
        var weight = mask.to(type);
        if (perSample) return scope.MoveToOuter((perPatch * weight).sum(1) / weight.sum(1).clamp_min(1));
        return scope.MoveToOuter((perPatch * weight).sum() / weight.sum().clamp_min(1));
    }

    /// <summary>
    /// MAE's per-sample random masking: bool [B,T] with exactly round(ratio·T) (to even on ties) true per row, each
    /// subset of that size equally likely. MAE keeps int(T·(1 - ratio)) tokens instead, which can mask one more.
    /// </summary>
    /// <param name="generator">The random source (its device is where the mask is made); null: libtorch's default.</param>
    /// <param name="device">Where the mask lives; defaults to CPU.</param>
    public static Tensor RandomMask(long batch, long tokens, double ratio, Generator? generator = null, Device? device = null)
    {
        if (batch < 0) throw new ArgumentOutOfRangeException(nameof(batch), batch, $"{nameof(RandomMask)}: the batch size must be non-negative");
        if (tokens < 0) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"{nameof(RandomMask)}: the token count must be non-negative");
        if (!(ratio >= 0 && ratio <= 1)) throw new ArgumentOutOfRangeException(nameof(ratio), ratio, $"{nameof(RandomMask)}: the ratio must be in [0, 1]");
        long masked = (long)Math.Round(ratio * tokens, MidpointRounding.ToEven);
        using var scope = NewDisposeScope();
        // fp64 noise: with fp32's 24 bits, ties among thousands of tokens are likely and would bias the order.
        var noise = rand([batch, tokens], dtype: ScalarType.Float64, device: device, generator: generator);
        var chosen = noise.argsort(1)[.., ..(int)masked];
        var mask = zeros([batch, tokens], dtype: ScalarType.Bool, device: noise.device)
            .scatter(1, chosen, ones([batch, masked], dtype: ScalarType.Bool, device: noise.device));
        return scope.MoveToOuter(mask);
    }

    /// <summary>
    /// MAE's drop of the masked tokens before the encoder: the visible tokens [B,T_keep,d] in their original order
    /// and their indices [B,T_keep] (int64), by a gather (the gradient flows back to <paramref name="tokens"/>).
    /// Every row of <paramref name="mask"/> must mask the same number of tokens (checked: one host synchronisation).
    /// </summary>
    /// <param name="tokens">[B,T,d].</param>
    /// <param name="mask">[B,T] bool, true = masked.</param>
    public static (Tensor Visible, Tensor VisibleIndex) KeepVisible(Tensor tokens, Tensor mask)
    {
        RequireRank(nameof(KeepVisible), nameof(tokens), tokens, 3);
        long b = tokens.shape[0], t = tokens.shape[1], d = tokens.shape[2];
        if (mask.dtype != ScalarType.Bool || mask.dim() != 2 || mask.shape[0] != b || mask.shape[1] != t)
            throw new ArgumentException($"{nameof(KeepVisible)}: mask is {Shape(mask)} {mask.dtype}; expected [{b}, {t}] Bool");
        using var scope = NewDisposeScope();
        var visibleCounts = mask.logical_not().sum(1);
        long keep = b == 0 ? 0 : visibleCounts[0].item<long>();
        if (b > 0 && visibleCounts.ne(keep).any().item<bool>())
            throw new ArgumentException($"{nameof(KeepVisible)}: the rows of mask {Shape(mask)} keep different numbers of tokens " +
                $"({string.Join(", ", visibleCounts.cpu().data<long>().ToArray().Distinct().Order())}); MAE masks the same count per sample");
        // Visible tokens sort by their index, masked ones after them all.
        var key = mask.to(ScalarType.Int64) * t + arange(t, dtype: ScalarType.Int64, device: mask.device);
        var index = key.sort(1).Values[.., ..(int)keep].contiguous();
        var visible = tokens.gather(1, index.unsqueeze(2).expand(b, keep, d));
        return (scope.MoveToOuter(visible), scope.MoveToOuter(index));
    }

    /// <summary>
    /// The decoder side of <see cref="KeepVisible"/>: [B,T,d] with each visible token back at its index and
    /// <paramref name="maskToken"/> everywhere else (gradients flow to both).
    /// </summary>
    /// <param name="visible">[B,T_keep,d].</param>
    /// <param name="visibleIndex">[B,T_keep] int64, as <see cref="KeepVisible"/> returns.</param>
    /// <param name="maskToken">[d] (or anything that reshapes to it), the learned mask token.</param>
    /// <param name="tokens">T, the full token count.</param>
    public static Tensor RestoreMasked(Tensor visible, Tensor visibleIndex, Tensor maskToken, long tokens)
    {
        RequireRank(nameof(RestoreMasked), nameof(visible), visible, 3);
        long b = visible.shape[0], keep = visible.shape[1], d = visible.shape[2];
        if (visibleIndex.dtype != ScalarType.Int64 || visibleIndex.dim() != 2 || visibleIndex.shape[0] != b || visibleIndex.shape[1] != keep)
            throw new ArgumentException($"{nameof(RestoreMasked)}: visibleIndex is {Shape(visibleIndex)} {visibleIndex.dtype}; expected [{b}, {keep}] Int64");
        if (maskToken.numel() != d || maskToken.dtype != visible.dtype)
            throw new ArgumentException($"{nameof(RestoreMasked)}: maskToken {Shape(maskToken)} {maskToken.dtype} is not {d} values of {visible.dtype}");
        if (tokens < keep) throw new ArgumentOutOfRangeException(nameof(tokens), tokens, $"{nameof(RestoreMasked)}: fewer tokens than the {keep} visible ones");
        using var scope = NewDisposeScope();
        if (keep > 0 && (visibleIndex.min().item<long>() < 0 || visibleIndex.max().item<long>() >= tokens))
            throw new ArgumentException($"{nameof(RestoreMasked)}: visibleIndex has values outside [0, {tokens})");
        var full = maskToken.reshape(1, 1, d).expand(b, tokens, d);
        return scope.MoveToOuter(full.scatter(1, visibleIndex.unsqueeze(2).expand(b, keep, d), visible));
    }

    static Tensor Reduce(Func<Tensor, Tensor> reduce, Tensor local, long length)
    {
        var global = reduce(local);
        if (global.dim() != 1 || global.shape[0] != length || global.dtype != local.dtype)
            throw new ArgumentException($"{nameof(BarlowTwins)}: allReduceSum turned {Shape(local)} {local.dtype} into {Shape(global)} {global.dtype}; a " +
                "sum over ranks keeps the shape and type");
        return global;
    }

    static long[] GridOf(string function, string what, long[] spatial, int patch)
    {
        if (patch < 1) throw new ArgumentOutOfRangeException(nameof(patch), patch, $"{function}: the patch size must be positive");
        if (spatial.Any(s => s % patch != 0))
            throw new ArgumentException($"{function}: {what} has a spatial size [{string.Join(", ", spatial)}] that is not " +
                $"a multiple of the patch size {patch}");
        return spatial.Select(s => s / patch).ToArray();
    }

    // fp64 only when every input is: the parity tests run in fp64; training inputs in bf16/fp16 compute in fp32.
    static ScalarType WorkType(string function, params Tensor[] inputs)
    {
        foreach (var input in inputs)
            if (!input.is_floating_point())
                throw new ArgumentException($"{function}: expected floating-point inputs, got {input.dtype} {Shape(input)}");
        return inputs.All(t => t.dtype == ScalarType.Float64) ? ScalarType.Float64 : ScalarType.Float32;
    }

    static Tensor As(Tensor t, ScalarType type) => t.dtype == type ? t : t.to(type);

    static void RequireRank(string function, string name, Tensor t, int rank)
    {
        ArgumentNullException.ThrowIfNull(t, name);
        if (t.dim() != rank) throw new ArgumentException($"{function}: {name} is {Shape(t)}, expected {rank} dimensions", name);
    }

    static void RequireSameShape(string function, (string Name, Tensor Tensor) a, (string Name, Tensor Tensor) b, int rank)
    {
        RequireRank(function, a.Name, a.Tensor, rank);
        RequireRank(function, b.Name, b.Tensor, rank);
        if (!a.Tensor.shape.SequenceEqual(b.Tensor.shape))
            throw new ArgumentException($"{function}: {a.Name} {Shape(a.Tensor)} and {b.Name} {Shape(b.Tensor)} differ in shape");
        if (a.Tensor.device_type != b.Tensor.device_type || a.Tensor.device_index != b.Tensor.device_index)
            throw new ArgumentException($"{function}: {a.Name} is on {a.Tensor.device} and {b.Name} on {b.Tensor.device}");
    }

    static string Shape(Tensor t) => "[" + string.Join(", ", t.shape) + "]";
}
