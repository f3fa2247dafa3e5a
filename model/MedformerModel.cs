// Medformer: a Perceiver IO over medical images and volumes, whose latent array is assembled per sample from
// learned banks chosen by its organ, modality, dimensionality and task.
//
//   images [B,C,H,W] or [B,C,D,H,W]
//     → tokenizer_2d / tokenizer_3d: patch embedding + Fourier position features  → tokens  [B,T,d]
//   latents.Select(keys, dims)                                                    → latents [B,N,d]
//     → encoder: cross-attention (latents read the tokens), then `depth` self-attention blocks, `repeats` times
//     → ln_f                                                                      → latents [B,N,d]
//   queries [B|1,Q,d] (class queries, Fourier position queries, patch queries)
//     → decoder: cross-attention (queries read the latents), in chunks of Q       → outputs [B,Q,d]
//
// Names follow the Perceiver IO paper and PyTorch's conventions, so state_dict keys read as a PyTorch user expects
// (blocks.0.attn.qkv.weight, latents.organ.brain, ...).
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer;

public sealed class MedformerModel : nn.Module<Tensor, IReadOnlyList<LatentKey>, Tensor>, INoWeightDecay
{
    public MedformerConfig Config { get; }

    private readonly PatchTokenizer tokenizer_2d;
    private readonly PatchTokenizer tokenizer_3d;
    private readonly LatentBanks latents;
    private readonly CrossAttentionBlock encoder;
    private readonly ModuleList<SelfAttentionBlock> blocks;
    private readonly LayerNorm ln_f;
    private readonly CrossAttentionBlock decoder;
    private readonly Linear query_pos_2d;
    private readonly Linear query_pos_3d;

    public MedformerModel(MedformerConfig config) : base(nameof(MedformerModel))
    {
        config.Validate();
        Config = config;
        int d = config.Dim;
        tokenizer_2d = new PatchTokenizer(config, spatialAxes: 2);
        tokenizer_3d = new PatchTokenizer(config, spatialAxes: 3);
        latents = new LatentBanks(config);
        encoder = new CrossAttentionBlock(d, config.CrossAttentionHeads, config.Widening, config.Dropout);
        var stack = new List<SelfAttentionBlock>();
        for (int i = 0; i < config.Depth; i++)
        {
            // Stochastic depth rises linearly to drop_path at the last block (as in DeiT and timm).
            double dropPath = config.Depth == 1 ? config.DropPath : config.DropPath * i / (config.Depth - 1);
            stack.Add(new SelfAttentionBlock(d, config.SelfAttentionHeads, config.Widening, config.Dropout, dropPath));
        }
        blocks = nn.ModuleList(stack.ToArray());
        ln_f = nn.LayerNorm(d);
        decoder = new CrossAttentionBlock(d, config.DecoderHeads, config.Widening, config.Dropout);
        query_pos_2d = nn.Linear(Fourier.Width(2, config.FourierBands), d);
        query_pos_3d = nn.Linear(Fourier.Width(3, config.FourierBands), d);
        RegisterComponents();
        InitWeights();
    }

    /// <summary>images → latents [B,N,d]: tokenize, select each sample's banks, encode.</summary>
    public override Tensor forward(Tensor images, IReadOnlyList<LatentKey> keys)
    {
        using var scope = NewDisposeScope();
        var tokens = Tokenize(images);
        return scope.MoveToOuter(Encode(tokens, keys, DimensionalityOf(images)));
    }

    /// <summary>[B,C,H,W] or [B,C,D,H,W] → tokens [B,T,d] (patch embedding + Fourier features of patch centres).</summary>
    public Tensor Tokenize(Tensor images) => DimensionalityOf(images).IsVolume ? tokenizer_3d.call(images) : tokenizer_2d.call(images);

    /// <summary>Token grid of an input shape ([H/p, W/p] or [D/p, H/p, W/p]).</summary>
    public long[] TokenGrid(long[] imageShape) => (imageShape.Length == 4 ? tokenizer_2d : tokenizer_3d).Grid(imageShape);

    /// <summary>tokens [B,T,d] (any subset of a grid's tokens, e.g. the visible ones under masking) → latents [B,N,d].</summary>
    public Tensor Encode(Tensor tokens, IReadOnlyList<LatentKey> keys, Dimensionality dimensionality)
    {
        using var scope = NewDisposeScope();
        if (tokens.shape[0] != keys.Count)
            throw new ArgumentException($"{keys.Count} latent keys for a batch of {tokens.shape[0]}");
        var z = latents.Select(keys, dimensionality);  // [B,N,d]
        z = encoder.call(z, tokens);
        for (int r = 0; r < Config.Repeats; r++)
            foreach (var block in blocks) z = block.call(z);
        return scope.MoveToOuter(ln_f.call(z));
    }

    /// <summary>queries [B|1,Q,d] read latents [B,N,d] → [B,Q,d], <see cref="MedformerConfig.QueryChunk"/> queries at a time.</summary>
    public Tensor Decode(Tensor latentArray, Tensor queries)
    {
        using var scope = NewDisposeScope();
        long batch = latentArray.shape[0], count = queries.shape[1];
        if (queries.shape[0] == 1 && batch > 1) queries = queries.expand(batch, -1, -1);
        if (count <= Config.QueryChunk) return scope.MoveToOuter(decoder.call(queries, latentArray));
        var chunks = new List<Tensor>();
        for (long start = 0; start < count; start += Config.QueryChunk)
            chunks.Add(decoder.call(queries.narrow(1, start, Math.Min(Config.QueryChunk, count - start)), latentArray));
        return scope.MoveToOuter(cat(chunks, dim: 1));
    }

    /// <summary>
    /// Position queries [1, prod(size), d] for a dense output of <paramref name="outputSize"/> ([H,W] or [D,H,W]),
    /// at any resolution: Fourier features of the output's pixel or voxel centres.
    /// </summary>
    public Tensor PositionQueries(long[] outputSize)
    {
        if (outputSize.Length is not (2 or 3) || outputSize.Any(n => n <= 0))
            throw new ArgumentException($"output size [{string.Join(", ", outputSize)}] must be 2 or 3 positive extents");
        using var scope = NewDisposeScope();
        var features = Fourier.GridFeatures(outputSize, Config.FourierBands, query_pos_2d.weight!.device);
        var queries = (outputSize.Length == 2 ? query_pos_2d : query_pos_3d).call(features.to(query_pos_2d.weight!.dtype));
        return scope.MoveToOuter(queries.unsqueeze(0));
    }

    /// <summary>
    /// Rows [start, start + count) of <see cref="PositionQueries(long[])"/> ([1, count, d], row-major over the output
    /// grid): a dense output decoded a chunk at a time never holds the whole grid's queries.
    /// </summary>
    public Tensor PositionQueries(long[] outputSize, long start, long count)
    {
        if (outputSize.Length is not (2 or 3) || outputSize.Any(n => n <= 0))
            throw new ArgumentException($"output size [{string.Join(", ", outputSize)}] must be 2 or 3 positive extents");
        using var scope = NewDisposeScope();
        var features = Fourier.GridFeatures(outputSize, Config.FourierBands, start, count, query_pos_2d.weight!.device);
        var queries = (outputSize.Length == 2 ? query_pos_2d : query_pos_3d).call(features.to(query_pos_2d.weight!.dtype));
        return scope.MoveToOuter(queries.unsqueeze(0));
    }

    /// <summary>Images [B,C,H,W] or volumes [B,C,D,H,W], by the batch's rank.</summary>
    public static Dimensionality DimensionalityOf(Tensor images) => images.dim() switch
    {
        4 => Dimensionality.Image,
        5 => Dimensionality.Volume,
        _ => throw new ArgumentException($"images must be [B,C,H,W] (2D) or [B,C,D,H,W] (3D), not [{string.Join(", ", images.shape)}]"),
    };

    public long ParameterCount() => parameters().Sum(p => p.numel());

    /// <summary>The latent banks are learned inputs, not weights: no decay (as Perceiver IO).</summary>
    public IEnumerable<string> NoWeightDecay() => latents.named_parameters().Select(p => $"latents.{p.name}");

    private void InitWeights() => Init.TruncatedNormalLinears(this);
}

/// <summary>
/// Patch embedding (or, with <see cref="MedformerConfig.Stem"/> "conv", a convolutional stem ending in the same
/// strided patch convolution) plus a projection of the patch centres' Fourier features: [B,C,…] → [B,T,d].
/// </summary>
internal sealed class PatchTokenizer : nn.Module<Tensor, Tensor>
{
    // "patch": proj (Conv k=p, s=p). "conv": stem.0 Conv 3×3 (C→h), ReLU, stem.2 Conv 3×3 (h→h), ReLU, stem.4 Conv k=p, s=p (h→d).
    private readonly nn.Module<Tensor, Tensor>? proj;
    private readonly Sequential? stem;
    private readonly Linear pos_proj;
    private readonly int patch, axes, channels, bands;

    public PatchTokenizer(MedformerConfig config, int spatialAxes) : base(spatialAxes == 2 ? "PatchTokenizer2d" : "PatchTokenizer3d")
    {
        axes = spatialAxes;
        patch = spatialAxes == 2 ? config.PatchSize2d : config.PatchSize3d;
        channels = config.InChannels;
        bands = config.FourierBands;
        nn.Module<Tensor, Tensor> Conv(long input, long output, long kernel, long stride, long padding) => spatialAxes == 2
            ? nn.Conv2d(input, output, kernel_size: kernel, stride: stride, padding: padding)
            : nn.Conv3d(input, output, kernel_size: kernel, stride: stride, padding: padding);
        if (config.Stem == "conv")
        {
            int h = config.StemChannels;
            stem = nn.Sequential(Conv(channels, h, 3, 1, 1), nn.ReLU(), Conv(h, h, 3, 1, 1), nn.ReLU(), Conv(h, config.Dim, patch, patch, 0));
        }
        else
            proj = Conv(channels, config.Dim, patch, patch, 0);
        pos_proj = nn.Linear(Fourier.Width(spatialAxes, bands), config.Dim);
        RegisterComponents();
    }

    public long[] Grid(long[] shape)
    {
        var spatial = shape[2..];
        if (spatial.Length != axes)
            throw new ArgumentException($"expected a {axes}D input [B,C,{(axes == 2 ? "H,W" : "D,H,W")}], got [{string.Join(", ", shape)}]");
        if (spatial.Any(n => n < patch || n % patch != 0))
            throw new ArgumentException($"input [{string.Join(", ", shape)}]: every spatial size must be a positive multiple of the patch size {patch}");
        return spatial.Select(n => n / patch).ToArray();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long[] grid = Grid(x.shape);
        long c = x.shape[1];
        if (c != channels)
        {
            // A grey image fills every channel, as grey-to-RGB does (equivalently, the kernels summed over channels).
            if (c != 1) throw new ArgumentException($"input has {c} channels; the model takes 1 or {channels}");
            x = x.expand([x.shape[0], channels, .. x.shape[2..]]);
        }
        var tokens = (stem ?? proj!).call(x).flatten(2).transpose(1, 2);      // [B,T,d]
        var positions = Fourier.GridFeatures(grid, bands, x.device).to(tokens.dtype); // [T,F]
        return scope.MoveToOuter(tokens + pos_proj.call(positions));          // [B,T,d] + [T,d]
    }
}

/// <summary>
/// The latent banks: general latents every sample gets, plus one learned [L,d] array per organ, modality,
/// dimensionality and task. Only the banks a batch selects enter the graph, so only they receive gradient.
/// </summary>
internal sealed class LatentBanks : nn.Module
{
    private readonly Parameter general;
    private readonly ParameterDict organ;
    private readonly ParameterDict modality;
    private readonly ParameterDict dimensionality;
    private readonly ParameterDict task;
    private readonly MedformerConfig config;

    public LatentBanks(MedformerConfig config) : base(nameof(LatentBanks))
    {
        this.config = config;
        general = Latents(config.GeneralLatents);
        organ = Banks(config.Organs);
        modality = Banks(config.Modalities);
        dimensionality = Banks(config.Dimensionalities);
        task = Banks(config.Tasks);
        RegisterComponents();

        ParameterDict Banks(IReadOnlyList<string> names)
        {
            var dict = new ParameterDict();
            foreach (string name in names) dict.Add(name, Latents(config.LatentsPerBank));
            return dict;
        }
    }

    private Parameter Latents(int count) => Init.TruncatedNormalParameter([count, config.Dim]);

    /// <summary>keys (one per sample), images or volumes → [B, N, d] with N = general + 4·L.</summary>
    public Tensor Select(IReadOnlyList<LatentKey> keys, Dimensionality dims)
    {
        using var scope = NewDisposeScope();
        long batch = keys.Count;
        var parts = new List<Tensor>();
        if (general.shape[0] > 0) parts.Add(general.unsqueeze(0).expand(batch, -1, -1));
        parts.Add(Pick(organ, keys.Select(k => k.Organ)));
        parts.Add(Pick(modality, keys.Select(k => k.Modality)));
        parts.Add(dimensionality[dims.Name].unsqueeze(0).expand(batch, -1, -1));
        parts.Add(Pick(task, keys.Select(k => k.Task)));
        return scope.MoveToOuter(cat(parts, dim: 1));
    }

    private static Tensor Pick(ParameterDict banks, IEnumerable<string> names)
    {
        string[] resolved = names.Select(n => banks.ContainsKey(n) ? n : "other").ToArray();
        string[] used = resolved.Distinct().ToArray();
        if (used.Length == 1) return banks[used[0]].unsqueeze(0).expand(resolved.Length, -1, -1);
        // Stack only the banks in use: a bank the batch does not select stays out of the graph (no gradient).
        var stacked = stack(used.Select(n => (Tensor)banks[n]).ToArray());                          // [U,L,d]
        var index = tensor(resolved.Select(n => (long)Array.IndexOf(used, n)).ToArray(), device: stacked.device);
        return stacked.index_select(0, index);                                                      // [B,L,d]
    }
}

/// <summary>Multi-head attention of x [B,N,d] over context [B,M,d] (context = x for self-attention).</summary>
internal sealed class Attention : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Linear q;
    private readonly Linear kv;
    private readonly Linear proj;
    private readonly int heads;
    private readonly double dropout;

    public Attention(int dim, int heads, double dropout) : base(nameof(Attention))
    {
        this.heads = heads;
        this.dropout = dropout;
        q = nn.Linear(dim, dim);
        kv = nn.Linear(dim, 2 * dim);
        proj = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], m = context.shape[1], d = x.shape[2];
        var query = q.call(x).view(b, n, heads, d / heads).transpose(1, 2);             // [B,h,N,dh]
        var keyValue = kv.call(context).view(b, m, 2, heads, d / heads).permute(2, 0, 3, 1, 4);
        var y = F.scaled_dot_product_attention(query, keyValue[0], keyValue[1], p: training ? dropout : 0.0); // [B,h,N,dh]
        return scope.MoveToOuter(proj.call(y.transpose(1, 2).reshape(b, n, d)));
    }
}

/// <summary>Self-attention with one fused qkv projection: [B,N,d] → [B,N,d].</summary>
internal sealed class SelfAttention : nn.Module<Tensor, Tensor>
{
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly int heads;
    private readonly double dropout;

    public SelfAttention(int dim, int heads, double dropout) : base(nameof(SelfAttention))
    {
        this.heads = heads;
        this.dropout = dropout;
        qkv = nn.Linear(dim, 3 * dim);
        proj = nn.Linear(dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        var parts = qkv.call(x).view(b, n, 3, heads, d / heads).permute(2, 0, 3, 1, 4); // [3,B,h,N,dh]
        var y = F.scaled_dot_product_attention(parts[0], parts[1], parts[2], p: training ? dropout : 0.0);
        return scope.MoveToOuter(proj.call(y.transpose(1, 2).reshape(b, n, d)));
    }
}

/// <summary>Linear → GELU → Linear → dropout, widening d to widening·d.</summary>
internal sealed class Mlp : nn.Module<Tensor, Tensor>
{
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly double dropout;

    public Mlp(int dim, int widening, double dropout) : base(nameof(Mlp))
    {
        this.dropout = dropout;
        fc1 = nn.Linear(dim, widening * dim);
        fc2 = nn.Linear(widening * dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        var y = fc2.call(F.gelu(fc1.call(x)));
        return scope.MoveToOuter(dropout > 0 ? F.dropout(y, dropout, training) : y);
    }
}

/// <summary>Pre-norm self-attention block with stochastic depth: x += attn(ln_1(x)); x += mlp(ln_2(x)).</summary>
internal sealed class SelfAttentionBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm ln_1;
    private readonly SelfAttention attn;
    private readonly LayerNorm ln_2;
    private readonly Mlp mlp;
    private readonly double dropPath;

    public SelfAttentionBlock(int dim, int heads, int widening, double dropout, double dropPath) : base(nameof(SelfAttentionBlock))
    {
        this.dropPath = dropPath;
        ln_1 = nn.LayerNorm(dim);
        attn = new SelfAttention(dim, heads, dropout);
        ln_2 = nn.LayerNorm(dim);
        mlp = new Mlp(dim, widening, dropout);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        x = x + DropPath.Apply(attn.call(ln_1.call(x)), dropPath, training);
        x = x + DropPath.Apply(mlp.call(ln_2.call(x)), dropPath, training);
        return scope.MoveToOuter(x);
    }
}

/// <summary>Pre-norm cross-attention block: x += attn(ln_q(x), ln_kv(context)); x += mlp(ln_2(x)).</summary>
internal sealed class CrossAttentionBlock : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly LayerNorm ln_q;
    private readonly LayerNorm ln_kv;
    private readonly Attention attn;
    private readonly LayerNorm ln_2;
    private readonly Mlp mlp;

    public CrossAttentionBlock(int dim, int heads, int widening, double dropout) : base(nameof(CrossAttentionBlock))
    {
        ln_q = nn.LayerNorm(dim);
        ln_kv = nn.LayerNorm(dim);
        attn = new Attention(dim, heads, dropout);
        ln_2 = nn.LayerNorm(dim);
        mlp = new Mlp(dim, widening, dropout);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x, Tensor context)
    {
        using var scope = NewDisposeScope();
        x = x + attn.call(ln_q.call(x), ln_kv.call(context));
        x = x + mlp.call(ln_2.call(x));
        return scope.MoveToOuter(x);
    }
}

/// <summary>Stochastic depth: drops a residual branch per sample, scaling the kept ones by 1/(1-p).</summary>
internal static class DropPath
{
    public static Tensor Apply(Tensor branch, double p, bool training)
    {
        if (!training || p == 0) return branch;
        using var scope = NewDisposeScope();
        long[] shape = [branch.shape[0], .. Enumerable.Repeat(1L, (int)branch.dim() - 1)];
        var keep = empty(shape, dtype: branch.dtype, device: branch.device).bernoulli_(1 - p).div_(1 - p);
        return scope.MoveToOuter(branch * keep);
    }
}
