using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench.Reference;

/// <summary>
/// The Medformer of <c>bench/run model</c> written as a TorchSharp user would write it from the paper, with nothing
/// of ours around it: no precision policy, no checked ops, no init helpers, no Scalar care; one DisposeScope per
/// step. The same modules, shapes and maths as model/MedformerModel.cs for 2D images (patch tokens with Fourier
/// features, latents from the banks a batch selects, one cross-attention, the self-attention stack, LayerNorm), so
/// ours over this twin measures what our code costs or saves on top of TorchSharp itself.
/// </summary>
public sealed class PlainTwin : nn.Module<Tensor, long[], Tensor>
{
    private readonly Conv2d proj;
    private readonly Linear pos_proj;
    private readonly Parameter general;
    private readonly Parameter organs;       // [organs, L, d]: the organ banks stacked
    private readonly Parameter modality;     // [L, d]: the one modality bank the benchmark selects
    private readonly Parameter dimensionality;
    private readonly Parameter task;
    private readonly Block encoder;
    private readonly ModuleList<Block> blocks;
    private readonly LayerNorm ln_f;
    private readonly int patch, bands, channels;

    public PlainTwin(MedformerConfig config, int organCount) : base(nameof(PlainTwin))
    {
        int d = config.Dim, l = config.LatentsPerBank;
        (patch, bands, channels) = (config.PatchSize2d, config.FourierBands, config.InChannels);
        proj = nn.Conv2d(channels, d, patch, stride: patch);
        pos_proj = nn.Linear(2 * (2 * bands + 1), d);
        general = new Parameter(randn(config.GeneralLatents, d) * 0.02);
        organs = new Parameter(randn(organCount, l, d) * 0.02);
        modality = new Parameter(randn(l, d) * 0.02);
        dimensionality = new Parameter(randn(l, d) * 0.02);
        task = new Parameter(randn(l, d) * 0.02);
        encoder = new Block(d, config.CrossAttentionHeads, config.Widening, cross: true);
        blocks = nn.ModuleList([.. Enumerable.Range(0, config.Depth).Select(_ => new Block(d, config.SelfAttentionHeads, config.Widening, cross: false))]);
        ln_f = nn.LayerNorm(d);
        RegisterComponents();
    }

    /// <summary>images [B,1,H,W], each sample's organ index → latents [B,N,d].</summary>
    public override Tensor forward(Tensor images, long[] organ)
    {
        long b = images.shape[0];
        long[] grid = [images.shape[2] / patch, images.shape[3] / patch];
        var x = images.expand(b, channels, images.shape[2], images.shape[3]);
        var tokens = proj.call(x).flatten(2).transpose(1, 2) + pos_proj.call(Fourier(grid));                // [B,T,d]
        var z = cat([
            general.unsqueeze(0).expand(b, -1, -1),
            organs.index_select(0, tensor(organ)),
            modality.unsqueeze(0).expand(b, -1, -1),
            dimensionality.unsqueeze(0).expand(b, -1, -1),
            task.unsqueeze(0).expand(b, -1, -1),
        ], dim: 1);                                                                                         // [B,N,d]
        z = encoder.call(z, tokens);
        foreach (var block in blocks) z = block.call(z, z);
        return ln_f.call(z);
    }

    // [x, y, sin(πf·x), sin(πf·y), cos(…)] of the cell centres, frequencies 1 … grid/2: Perceiver's position features.
    Tensor Fourier(long[] grid)
    {
        var axes = grid.Select(n => linspace(-1.0 + 1.0 / n, 1.0 - 1.0 / n, n)).ToArray();
        var mesh = meshgrid(axes, indexing: "ij");
        var positions = stack([mesh[0].flatten(), mesh[1].flatten()], dim: -1);                           // [P,2]
        var nyquist = tensor(grid.Select(n => (float)Math.Max(n / 2.0, 1.0)).ToArray());
        var frequencies = 1 + linspace(0, 1, bands).unsqueeze(0) * (nyquist.unsqueeze(1) - 1);              // [2,bands]
        var angles = (Math.PI * positions.unsqueeze(-1) * frequencies).flatten(1);                          // [P,2·bands]
        return cat([positions, angles.sin(), angles.cos()], dim: -1);
    }

    /// <summary>Pre-norm attention (cross: queries read a context, q and kv apart; else self-attention, one qkv) and an MLP, both residual.</summary>
    sealed class Block : nn.Module<Tensor, Tensor, Tensor>
    {
        private readonly LayerNorm ln_q, ln_2;
        private readonly LayerNorm? ln_kv;
        private readonly Linear? q, kv, qkv;
        private readonly Linear out_proj, fc1, fc2;
        private readonly int heads;

        public Block(int d, int heads, int widening, bool cross) : base(nameof(Block))
        {
            this.heads = heads;
            ln_q = nn.LayerNorm(d);
            ln_2 = nn.LayerNorm(d);
            if (cross)
            {
                ln_kv = nn.LayerNorm(d);
                q = nn.Linear(d, d);
                kv = nn.Linear(d, 2 * d);
            }
            else qkv = nn.Linear(d, 3 * d);
            out_proj = nn.Linear(d, d);
            fc1 = nn.Linear(d, widening * d);
            fc2 = nn.Linear(widening * d, d);
            RegisterComponents();
        }

        public override Tensor forward(Tensor x, Tensor context)
        {
            long b = x.shape[0], n = x.shape[1], m = context.shape[1], d = x.shape[2], dh = d / heads;
            Tensor y;
            if (qkv is not null)
            {
                var parts = qkv.call(ln_q.call(x)).view(b, n, 3, heads, dh).permute(2, 0, 3, 1, 4);            // [3,B,h,N,dh]
                y = F.scaled_dot_product_attention(parts[0], parts[1], parts[2]);
            }
            else
            {
                var qh = q!.call(ln_q.call(x)).view(b, n, heads, dh).transpose(1, 2);                          // [B,h,N,dh]
                var kvh = kv!.call(ln_kv!.call(context)).view(b, m, 2, heads, dh).permute(2, 0, 3, 1, 4);      // [2,B,h,M,dh]
                y = F.scaled_dot_product_attention(qh, kvh[0], kvh[1]);
            }
            x = x + out_proj.call(y.transpose(1, 2).reshape(b, n, d));
            return x + fc2.call(F.gelu(fc1.call(ln_2.call(x))));
        }
    }
}
