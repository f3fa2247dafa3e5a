using System.CommandLine;
using System.Globalization;
using Medformer.Heads;
using Medformer.Heads.FineTuning;

namespace Medformer.Cli;

/// <summary>
/// <c>--fixmatch [key=value,…]</c>: after fine-tuning, FixMatch goes on over the labelled images and those --fraction
/// leaves out (<see cref="SemiSupervised.FixMatch"/>); keys threshold (τ), ratio (μ), weight (λ_u) and steps (default
/// --max-steps).
/// </summary>
static class FixMatchOption
{
    const string Keys = "threshold, ratio, weight, steps";

    /// <summary>What --fixmatch asks for: the options and the steps (null: --max-steps).</summary>
    public sealed record Request(FixMatchOptions Options, long? Steps);

    public static Option<string?> Create() => new("--fixmatch")
    {
        Description = "FixMatch after fine-tuning (off by default): the labelled images and those --fraction leaves out train together, each "
            + "unlabelled image learning, on a strongly augmented view, the class the model gives its weakly augmented view where confident; "
            + "optionally threshold=X (top probability, default 0.95),ratio=X (unlabelled images per labelled one in a batch, default 7),"
            + "weight=X (of the unlabelled term, default 1),steps=N (default --max-steps).",
        Arity = ArgumentArity.ZeroOrOne,
    };

    /// <summary>The options --fixmatch asks for (null when absent); any bad value is an ArgumentException naming --fixmatch.</summary>
    public static Request? Parse(ParseResult parse, Option<string?> option)
    {
        if (parse.GetResult(option) is null) return null;
        string text = parse.GetValue(option) ?? "";
        var options = new FixMatchOptions();
        long? steps = null;
        var read = new KeyValues("--fixmatch", text, Keys);
        foreach (var (key, value) in read.Pairs(text))
            switch (key)
            {
                case "threshold": options = options with { Threshold = read.Number(key, value) }; break;
                case "ratio": options = options with { UnlabelledRatio = read.Number(key, value) }; break;
                case "weight": options = options with { Weight = read.Number(key, value) }; break;
                case "steps":
                    steps = read.Integer(key, value);
                    if (steps < 1) throw read.Error($"steps {steps} must be at least 1");
                    break;
                default: throw read.Unknown(key);
            }
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw read.Error(e.Message);
        }
        return new Request(options, steps);
    }

    /// <summary>Every setting, as --fixmatch spells it (the MLflow param and the JSON report); "none" when off.</summary>
    public static string Describe(Request? request, long maxSteps) => request is not { Options: var o } ? "none"
        : string.Create(CultureInfo.InvariantCulture, $"threshold={o.Threshold},ratio={o.UnlabelledRatio},weight={o.Weight},steps={request.Steps ?? maxSteps}");
}
