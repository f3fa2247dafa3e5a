using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench;

/// <summary>
/// The pre-norm transformer block of <c>bench/run runtime</c> (twin: TransformerBlock in reference/runtime.py):
/// LayerNorm → 4-head self-attention → residual → LayerNorm → MLP (GELU, 4×) → residual.
/// </summary>
public sealed class TransformerBlock : nn.Module<Tensor, Tensor>
{
    private readonly LayerNorm ln_1;
    private readonly Linear qkv;
    private readonly Linear proj;
    private readonly LayerNorm ln_2;
    private readonly Linear fc1;
    private readonly Linear fc2;
    private readonly int heads;

    public TransformerBlock(int dim, int heads) : base(nameof(TransformerBlock))
    {
        this.heads = heads;
        ln_1 = nn.LayerNorm(dim);
        qkv = nn.Linear(dim, 3 * dim);
        proj = nn.Linear(dim, dim);
        ln_2 = nn.LayerNorm(dim);
        fc1 = nn.Linear(dim, 4 * dim);
        fc2 = nn.Linear(4 * dim, dim);
        RegisterComponents();
    }

    public override Tensor forward(Tensor x)
    {
        using var scope = NewDisposeScope();
        long b = x.shape[0], n = x.shape[1], d = x.shape[2];
        var parts = qkv.call(ln_1.call(x)).view(b, n, 3, heads, d / heads).permute(2, 0, 3, 1, 4); // [3,B,h,N,dh]
        var y = F.scaled_dot_product_attention(parts[0], parts[1], parts[2]).transpose(1, 2).reshape(b, n, d);
        x = x + proj.call(y);
        x = x + fc2.call(F.gelu(fc1.call(ln_2.call(x))));
        return scope.MoveToOuter(x);
    }

    /// <summary>Seconds per AdamW training step (forward, MSE loss, backward, step, zero_grad) under a precision.</summary>
    public static Timing TimeStep(Precision precision, int dim = 256, int tokens = 64, int batch = 64, int repeats = 10)
    {
        Seeding.SeedEverything(0);
        using var block = new TransformerBlock(dim, 4);
        using var policy = MixedPrecision.Create(block, precision, CPU);
        using var optimizer = optim.AdamW(policy.MasterParameters, lr: 1e-4);
        using var x = randn(batch, tokens, dim);
        using var target = randn(batch, tokens, dim);
        using var input = policy.Cast(x);
        return Timing.Measure(() => Scope.Run(() =>
        {
            policy.Backward(MixedPrecision.Loss(block.call(input), target, (o, t) => F.mse_loss(o, t)));
            policy.Step(optimizer);
            policy.ZeroGrad(optimizer);
        }), warmup: 3, repeats: repeats);
    }

    /// <summary>The whole block cast to bf16, optimizer included: the upper bound of what bf16 gives here.</summary>
    public static Timing TimeStepAllBf16(int dim = 256, int tokens = 64, int batch = 64, int repeats = 10)
    {
        Seeding.SeedEverything(0);
        using var block = new TransformerBlock(dim, 4);
        block.to(ScalarType.BFloat16);
        using var optimizer = optim.AdamW(block.parameters(), lr: 1e-4);
        using var x = randn(batch, tokens, dim, dtype: ScalarType.BFloat16);
        using var target = randn(batch, tokens, dim, dtype: ScalarType.BFloat16);
        return Timing.Measure(() => Scope.Run(() =>
        {
            F.mse_loss(block.call(x), target).backward();
            optimizer.step();
            optimizer.zero_grad();
        }), warmup: 3, repeats: repeats);
    }
}
