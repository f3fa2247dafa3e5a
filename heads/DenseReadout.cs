using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>
/// The dense read-out of the segmentation and image-to-image heads: one query per output pixel or voxel, at any
/// output resolution, reads the latents through the model's decoder; LayerNorm and a linear layer (zero-initialised)
/// give <c>outputs</c> values per pixel. A query is the Fourier position query of its pixel's centre plus, unless
/// <c>pixelContext</c> is 0, a learned projection of the input's k×k (k×k×k) neighbourhood around that point
/// (edge-replicated, resampled to the output grid when it is finer), as Perceiver IO's optical-flow queries carry
/// their pixel's features: the latents hold what the image is, the query where and what it looks like there, so
/// boundaries and noise are resolved at the pixel, not at the 4-pixel patch. Queries are built and decoded
/// <c>chunk</c> at a time (the model's query_chunk by default), so only the output, never a [P,d] array of the
/// whole grid, is held at once.
/// </summary>
public sealed class DenseReadout : nn.Module
{
    private readonly Linear? pixels_2d;
    private readonly Linear? pixels_3d;
    private readonly LayerNorm norm;
    internal readonly Linear fc;
    private readonly int context, channels;

    public DenseReadout(MedformerConfig config, int outputs, int pixelContext = 3) : base(nameof(DenseReadout))
    {
        if (outputs < 1) throw new ArgumentException($"a dense read-out needs at least one output channel, not {outputs}");
        if (pixelContext < 0 || (pixelContext > 0 && pixelContext % 2 == 0))
            throw new ArgumentException($"pixel context {pixelContext} must be 0 (position queries only) or an odd neighbourhood width");
        context = pixelContext;
        channels = config.InChannels;
        if (context > 0)
        {
            pixels_2d = nn.Linear(channels * context * context, config.Dim);
            pixels_3d = nn.Linear(channels * context * context * context, config.Dim);
        }
        norm = nn.LayerNorm(config.Dim);
        fc = nn.Linear(config.Dim, outputs);
        using (torch.no_grad())
        {
            foreach (var linear in new[] { pixels_2d, pixels_3d, fc })
                if (linear is not null) Runtime.Init.TruncatedNormalLinear(linear);
            nn.init.zeros_(fc.weight!);  // starts at zero logits (the uniform prediction) or a zero correction
        }
        RegisterComponents();
    }

    public int PixelContext => context;

    /// <summary>latents [B,N,d] and the images they came from [B,C,…] → [B,outputs,…outputSize] in the model's dtype.</summary>
    public Tensor Forward(MedformerModel model, Tensor latents, Tensor images, long[] outputSize, int? chunk = null)
    {
        int axes = (int)images.dim() - 2;
        if (outputSize.Length != axes)
            throw new ArgumentException($"output size [{string.Join(",", outputSize)}] has {outputSize.Length} axes where the images " +
                $"[{string.Join(",", images.shape)}] have {axes}");
        using var scope = NewDisposeScope();
        long batch = latents.shape[0], cells = outputSize.Aggregate(1L, (a, n) => a * n);
        long step = chunk ?? model.Config.QueryChunk;
        var features = context > 0 ? Neighbourhoods(images, outputSize) : null;     // [B,C·k^n,P]
        var parts = new List<Tensor>();
        for (long start = 0; start < cells; start += step)
        {
            // A chunk's queries and decoder states ([B,n,d] each) go when the chunk is done; only its outputs stay.
            using var chunkScope = NewDisposeScope();
            long count = Math.Min(step, cells - start);
            var queries = model.PositionQueries(outputSize, start, count);          // [1,n,d]
            if (features is not null)
                queries = queries + (axes == 2 ? pixels_2d! : pixels_3d!).call(features.narrow(2, start, count).transpose(1, 2));
            parts.Add(chunkScope.MoveToOuter(fc.call(norm.call(model.Decode(latents, queries)))));   // [B,n,outputs]
        }
        var values = parts.Count == 1 ? parts[0] : cat(parts, dim: 1);
        return scope.MoveToOuter(values.transpose(1, 2).reshape([batch, fc.weight!.shape[0], .. outputSize]));
    }

    /// <summary>Each pixel's k^n neighbourhood (channels filled as the tokenizer fills them), on the output grid, flattened: [B,C·k^n,P].</summary>
    Tensor Neighbourhoods(Tensor images, long[] outputSize)
    {
        int axes = (int)images.dim() - 2;
        var x = images;
        if (x.shape[1] != channels)
        {
            if (x.shape[1] != 1) throw new ArgumentException($"input has {x.shape[1]} channels; the model takes 1 or {channels}");
            x = x.expand([x.shape[0], channels, .. x.shape[2..]]);
        }
        long radius = context / 2;
        var padded = F.pad(x, Enumerable.Repeat(radius, 2 * axes).ToArray(), PaddingModes.Replicate);
        var shifted = new List<Tensor>();
        foreach (var offset in Offsets(axes, context))
        {
            var view = padded;
            for (int a = 0; a < axes; a++) view = view.narrow(2 + a, offset[a], x.shape[2 + a]);
            shifted.Add(view);
        }
        var features = cat(shifted, dim: 1);                                           // [B,C·k^n,…]
        if (!features.shape[2..].SequenceEqual(outputSize))
            features = F.interpolate(features, outputSize, mode: axes == 2 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear, align_corners: false);
        return features.flatten(2);
    }

    static IEnumerable<long[]> Offsets(int axes, int width)
    {
        long total = (long)Math.Pow(width, axes);
        for (long i = 0; i < total; i++)
        {
            var offset = new long[axes];
            long rest = i;
            for (int a = axes - 1; a >= 0; a--, rest /= width) offset[a] = rest % width;
            yield return offset;
        }
    }
}
