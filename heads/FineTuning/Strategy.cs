using System.Globalization;

namespace Medformer.Heads.FineTuning;

/// <summary>What trains when fine-tuning.</summary>
public enum StrategyKind
{
    /// <summary>Every weight of the model and the head, at one learning rate.</summary>
    Full,
    /// <summary>The head alone; the encoder and decoder stay frozen.</summary>
    LinearProbe,
    /// <summary>The last k self-attention blocks, ln_f, the decoder and the head.</summary>
    LastBlocks,
    /// <summary>Everything, with learning rates decaying by a factor per layer from the head down (BEiT, MAE).</summary>
    LayerwiseDecay,
}

/// <summary>
/// A fine-tuning strategy: which of the model's parameters train and at which share of the learning rate. Layers,
/// bottom to top for layer-wise decay: tokenizers and latent banks (0), the encoder's cross-attention (1),
/// self-attention block i (2+i), then ln_f, the decoder, the query projections and the head (depth+2, the full
/// rate); a parameter of layer l gets decay^(depth+2−l).
/// </summary>
public sealed record Strategy(StrategyKind Kind, int Blocks = 0, double Decay = 1)
{
    public static Strategy Full { get; } = new(StrategyKind.Full);

    public static Strategy LinearProbe { get; } = new(StrategyKind.LinearProbe);

    public static Strategy LastBlocks(int k) =>
        k >= 1 ? new(StrategyKind.LastBlocks, Blocks: k) : throw new ArgumentException($"last blocks {k} must be at least 1");

    public static Strategy LayerwiseDecay(double decay) =>
        decay is > 0 and <= 1 ? new(StrategyKind.LayerwiseDecay, Decay: decay) : throw new ArgumentException($"layer-wise decay {decay} must be in (0, 1]");

    /// <summary>full | linear | last:K | llrd:D (as <c>--strategy</c> takes it).</summary>
    public static Strategy Parse(string text)
    {
        var parts = text.Split(':', 2);
        switch (parts[0])
        {
            case "full" when parts.Length == 1: return Full;
            case "linear" when parts.Length == 1: return LinearProbe;
            case "last" when parts.Length == 2 && int.TryParse(parts[1], CultureInfo.InvariantCulture, out int k): return LastBlocks(k);
            case "llrd" when parts.Length == 2 && double.TryParse(parts[1], CultureInfo.InvariantCulture, out double d): return LayerwiseDecay(d);
            default: throw new
                ArgumentException($"--strategy '{text}': expected full, linear, last:K (the last K blocks) or llrd:D (layer-wise decay D, e.g. 0.75)");
        }
    }

    public override string ToString() => Kind switch
    {
        StrategyKind.Full => "full",
        StrategyKind.LinearProbe => "linear",
        StrategyKind.LastBlocks => $"last:{Blocks}",
        _ => $"llrd:{Decay.ToString(CultureInfo.InvariantCulture)}",
    };

    /// <summary>Checks the strategy against a model config (last:K needs K ≤ depth).</summary>
    public void Validate(MedformerConfig config)
    {
        if (Kind == StrategyKind.LastBlocks && Blocks > config.Depth)
            throw new ArgumentException($"strategy last:{Blocks}: the model has {config.Depth} self-attention blocks");
    }

    /// <summary>Whether the model's parameter <paramref name="name"/> (a state_dict key, e.g. "blocks.1.attn.qkv.weight") trains.</summary>
    public bool Trains(string name, MedformerConfig config) => Kind switch
    {
        StrategyKind.LinearProbe => false,
        StrategyKind.LastBlocks => Layer(name, config) >= config.Depth + 2 - Blocks,
        _ => true,
    };

    /// <summary>The learning-rate multiplier of the model's parameter <paramref name="name"/>; 1 for the head's.</summary>
    public double LearningRateScale(string name, MedformerConfig config) =>
        Kind == StrategyKind.LayerwiseDecay ? Math.Pow(Decay, config.Depth + 2 - Layer(name, config)) : 1;

    /// <summary>The layer of a model parameter: 0 tokenizers and banks, 1 encoder, 2+i block i, depth+2 the rest.</summary>
    public static int Layer(string name, MedformerConfig config)
    {
        if (name.StartsWith("tokenizer_", StringComparison.Ordinal) || name.StartsWith("latents.", StringComparison.Ordinal)) return 0;
        if (name.StartsWith("encoder.", StringComparison.Ordinal)) return 1;
        if (name.StartsWith("blocks.", StringComparison.Ordinal))
        {
            var index = name["blocks.".Length..].Split('.')[0];
            return 2 + int.Parse(index, CultureInfo.InvariantCulture);
        }
        return config.Depth + 2;
    }
}
