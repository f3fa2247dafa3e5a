namespace Medformer;

/// <summary>
/// Analytic forward FLOPs per sample (2 per multiply-add of every matmul, convolution and attention product;
/// norms, activations and softmax are left out, as model-FLOP utilisation counts them).
/// </summary>
public sealed record ModelFlops(long Tokens, long Latents, long Queries, double Tokenizer, double EncoderCrossAttention, double SelfAttention, double Decoder)
{
    public double Total => Tokenizer + EncoderCrossAttention + SelfAttention + Decoder;

    /// <summary>
    /// For one sample of <paramref name="spatial"/> ([H,W] or [D,H,W]) read out by <paramref name="queries"/> queries.
    /// A training step (forward and backward) costs about three times this.
    /// </summary>
    public static ModelFlops Forward(MedformerConfig config, long[] spatial, long queries = 0)
    {
        if (spatial.Length is not (2 or 3))
            throw new ArgumentException($"input size [{string.Join(", ", spatial)}] must be H,W or D,H,W");
        int patch = spatial.Length == 2 ? config.PatchSize2d : config.PatchSize3d;
        if (spatial.Any(n => n < patch || n % patch != 0))
            throw new ArgumentException($"input size [{string.Join(", ", spatial)}] is not a positive multiple of the patch size {patch}");
        double d = config.Dim, w = config.Widening * d;
        long t = spatial.Aggregate(1L, (a, n) => a * (n / patch));
        long n = config.LatentCount;
        double patchVolume = Math.Pow(patch, spatial.Length);
        double tokenizer = config.Stem == "conv"
            // Two 3×3(×3) convolutions at every pixel (C→h, h→h), then the patch convolution h→d at every token.
            ? 2.0 * spatial.Aggregate(1L, (a, s) => a * s) * Math.Pow(3, spatial.Length) * (config.InChannels + config.StemChannels) * config.StemChannels
              + 2 * t * (config.StemChannels * patchVolume * d + Fourier.Width(spatial.Length, config.FourierBands) * d)
            : 2 * t * (config.InChannels * patchVolume * d + Fourier.Width(spatial.Length, config.FourierBands) * d);
        double cross = CrossBlock(n, t, d, w);
        double block = 2 * n * d * 3 * d + 4.0 * n * n * d + 2 * n * d * d + 4 * n * d * w;
        double selfAttention = block * config.Depth * config.Repeats;
        double decoder = queries > 0 ? CrossBlock(queries, n, d, w) : 0;
        return new ModelFlops(t, n, queries, tokenizer, cross, selfAttention, decoder);
    }

    // q [x,d]·[d,d], kv [m,d]·[d,2d], scores and values 2·(2·x·m·d), proj, MLP.
    static double CrossBlock(long x, long m, double d, double w) =>
        2 * x * d * d + 2 * m * d * 2 * d + 4.0 * x * m * d + 2 * x * d * d + 4 * x * d * w;
}
