using Medformer.Datasets.Transforms;
using Medformer.Pretrain.Objectives;

namespace Medformer.Pretrain;

/// <summary>
/// The run config's <c>brainfuse:</c> section: BrainFuse mixes as the views of the instance objectives (Barlow Twins,
/// SimCLR: those whose <see cref="Objective.MixesViews"/>). A share of each batch's samples is replaced by mixes of
/// <see cref="Parts"/> of the batch's subjects: both views of a mix are the same combination (the same weights) of
/// its parts' views, so the objective treats the synthetic subject as one instance; with <see cref="Consistency"/>
/// λ &gt; 0 each mix's projections are also pulled (1 − cosine) towards the same combination of the stop-gradient
/// projections of its parts' first views. Keys as <c>medformer finetune --brainfuse</c>'s.
/// <code>
/// brainfuse: { parts: 2, alpha: 1, weights: smooth, share: 0.5, consistency: 0.1, grid: 4 }
/// </code>
/// </summary>
public sealed class BrainFuseSpec
{
    public int Parts { get; set; } = 2;
    public double Alpha { get; set; } = 1.0;
    /// <summary>dirichlet (one weight per part: the raw mix) or smooth (spatial weight maps).</summary>
    public string Weights { get; set; } = "smooth";
    public int Grid { get; set; } = 4;
    public double Share { get; set; } = 0.5;
    public double Consistency { get; set; }

    /// <summary>The weights' kind; an error naming brainfuse.weights for an unknown one.</summary>
    public MixWeights ParseWeights(string source) => Weights switch
    {
        "dirichlet" or "raw" => MixWeights.Dirichlet,
        "smooth" or "spatial" => MixWeights.Spatial,
        _ => throw new ArgumentException($"{source}: brainfuse.weights: '{Weights}' must be dirichlet or smooth"),
    };

    /// <summary>Every key in range, and at least one objective to mix views for; one line naming the key.</summary>
    internal void Validate(string source, int batchSize, IEnumerable<string> objectives)
    {
        void Require(bool ok, string key, string what)
        {
            if (!ok) throw new ArgumentException($"{source}: brainfuse.{key}: {what}");
        }
        Require(Parts >= 2, "parts", $"{Parts}: a mix needs at least 2 parts");
        Require(Parts <= batchSize, "parts", $"{Parts} needs batches of at least {Parts} samples, batch.size is {batchSize}");
        Require(Alpha > 0 && double.IsFinite(Alpha), "alpha", $"{Alpha} must be positive and finite");
        ParseWeights(source);
        Require(Grid is >= 2 and <= 64, "grid", $"{Grid} must be 2 to 64 control points per axis");
        Require(Share > 0 && Share <= 1, "share", $"{Share} must be in (0, 1]");
        Require(Consistency >= 0 && double.IsFinite(Consistency), "consistency", $"{Consistency} must be 0 (off) or positive");
        var names = objectives.ToList();
        if (!names.Any(ObjectiveRegistry.MixesViews))
            throw new ArgumentException($"{source}: brainfuse: mixes the views of instance objectives " +
                $"({string.Join(", ", ObjectiveRegistry.Names.Where(ObjectiveRegistry.MixesViews))}), and objectives {string.Join(", ", names)} have none");
    }

    /// <summary>The mixing settings, validated.</summary>
    public BrainFuseViews ToViews(string source) => new(new BrainFuse(Alpha, ParseWeights(source), [Grid]), Parts, Share, Consistency);
}
