using System.Globalization;
using Medformer.Datasets.Transforms;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// BrainFuse in fine-tuning (<c>--brainfuse parts=K,alpha=A,weights=dirichlet|smooth,share=S,consistency=λ,grid=G</c>;
/// <see cref="FineTuneOptions.BrainFuse"/>): a share <see cref="Share"/> of each training batch is replaced by mixes of
/// <see cref="Parts"/> of the batch's subjects, with Dirichlet(<see cref="Alpha"/>) weights, one per part
/// ("dirichlet": the raw-image mix) or smooth maps interpolated from a <see cref="Grid"/>-point control grid per
/// axis ("smooth": BrainFuse's spatial mix); each mix learns the same combination of its parts' targets (the head's
/// <see cref="Head.SoftTargets"/>), and with <see cref="Consistency"/> λ &gt; 0 also λ · the head's soft loss of its
/// prediction against the combination of the stop-gradient predictions on its parts.
/// </summary>
public sealed record BrainFuseOptions
{
    /// <summary>The flag every error names.</summary>
    public const string Flag = "--brainfuse";

    /// <summary>K: subjects per mix (at least 2, at most the batch).</summary>
    public int Parts { get; init; } = 2;
    /// <summary>The Dirichlet concentration of the weights (1: uniform over the simplex).</summary>
    public double Alpha { get; init; } = 1.0;
    /// <summary>Dirichlet: one weight per part; Spatial ("smooth"): a smooth weight map per part.</summary>
    public MixWeights Weights { get; init; } = MixWeights.Spatial;
    /// <summary>Control points per axis of the smooth maps (2 to 64).</summary>
    public int Grid { get; init; } = 4;
    /// <summary>The share of each batch replaced by mixes, in (0, 1].</summary>
    public double Share { get; init; } = 0.5;
    /// <summary>λ of the consistency term (0: off).</summary>
    public double Consistency { get; init; }

    /// <summary>The mixer that draws the weights.</summary>
    public BrainFuse Mixer => new(Alpha, Weights, [Grid]);

    /// <summary>Every value in range, or one line naming <see cref="Flag"/>.</summary>
    public void Validate()
    {
        if (Parts < 2) throw Error($"parts={Parts}: a mix needs at least 2 parts");
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) throw Error($"alpha={Format(Alpha)} must be positive and finite");
        if (Grid is < 2 or > 64) throw Error($"grid={Grid} must be 2 to 64 control points per axis");
        if (!(Share > 0 && Share <= 1)) throw Error($"share={Format(Share)} must be in (0, 1]");
        if (!(Consistency >= 0) || double.IsInfinity(Consistency)) throw Error($"consistency={Format(Consistency)} must be 0 (off) or positive");
    }

    /// <summary>The keys the flag takes.</summary>
    public const string Keys = "parts, alpha, weights (dirichlet|smooth), share, consistency, grid";

    /// <summary>
    /// <c>parts=K,alpha=A,weights=dirichlet|smooth,share=S,consistency=λ,grid=G</c> (any subset; the rest default),
    /// validated; any bad value is one line naming the flag and the text.
    /// </summary>
    public static BrainFuseOptions Parse(string text)
    {
        var options = new BrainFuseOptions();
        ArgumentException Bad(string message) => new($"{Flag} '{text}': {message}");
        double Number(string key, string value) => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) ? x
            : throw Bad($"{key} '{value}' is not a number");
        int Integer(string key, string value) => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n
            : throw Bad($"{key} '{value}' is not an integer");
        foreach (var pair in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var kv = pair.Split('=', 2);
            if (kv.Length != 2 || kv[0].Length == 0) throw Bad($"'{pair}' is not key=value ({Keys})");
            var (key, value) = (kv[0], kv[1]);
            options = key switch
            {
                "parts" => options with { Parts = Integer(key, value) },
                "alpha" => options with { Alpha = Number(key, value) },
                "weights" => options with { Weights = ParseWeights(value) ?? throw Bad($"weights '{value}': expected dirichlet or smooth") },
                "share" => options with { Share = Number(key, value) },
                "consistency" => options with { Consistency = Number(key, value) },
                "grid" => options with { Grid = Integer(key, value) },
                _ => throw Bad($"unknown key '{key}' (expected {Keys})"),
            };
        }
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw Bad(e.Message[(Flag.Length + 2)..]);
        }
        return options;
    }

    /// <summary>"dirichlet" (or "raw") and "smooth" (or "spatial"); null for anything else.</summary>
    public static MixWeights? ParseWeights(string name) => name switch
    {
        "dirichlet" or "raw" => MixWeights.Dirichlet,
        "smooth" or "spatial" => MixWeights.Spatial,
        _ => null,
    };

    /// <summary>The settings as the flag spells them (MLflow's param, the JSON report).</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"parts={Parts},alpha={Alpha},weights={(Weights == MixWeights.Dirichlet ? "dirichlet" : "smooth")}," +
        $"share={Share},consistency={Consistency},grid={Grid}");

    static ArgumentException Error(string message) => new($"{Flag}: {message}");

    static string Format(double x) => x.ToString(CultureInfo.InvariantCulture);
}
