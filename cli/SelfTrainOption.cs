using System.CommandLine;
using System.Globalization;
using Medformer.Heads;
using Medformer.Heads.FineTuning;

namespace Medformer.Cli;

/// <summary>
/// <c>--self-train [key=value,…]</c>: after fine-tuning, the model pseudo-labels the training images left out by
/// --fraction and fine-tuning goes on over both (<see cref="SemiSupervised.SelfTrain"/>); keys threshold, share, rounds,
/// steps (default --max-steps) and student (teacher: go on from the teacher's weights; pretrained: a new model and head
/// from the pretrained checkpoint).
/// </summary>
static class SelfTrainOption
{
    const string Keys = "threshold, share, rounds, steps, student";

    /// <summary>What --self-train asks for: the options, and whether the student starts again from the pretrained weights.</summary>
    public sealed record Request(SelfTrainingOptions Options, bool FreshStudent);

    public static Option<string?> Create() => new("--self-train")
    {
        Description = "Self-training after fine-tuning (off by default): the model labels the training images that --fraction leaves out, and "
            + "fine-tuning goes on over the labelled and the confidently pseudo-labelled ones; optionally threshold=X (top probability to keep a "
            + "pseudo-label, default 0),share=X (of each batch, default 0.5),rounds=N (default 1),steps=N (per round, default --max-steps),"
            + "student=teacher|pretrained (go on from the teacher's weights, the default, or start a new model and head from the checkpoint).",
        Arity = ArgumentArity.ZeroOrOne,
    };

    /// <summary>The options --self-train asks for (null when absent); any bad value is an ArgumentException naming --self-train.</summary>
    public static Request? Parse(ParseResult parse, Option<string?> option)
    {
        if (parse.GetResult(option) is null) return null;
        string text = parse.GetValue(option) ?? "";
        var options = new SelfTrainingOptions();
        bool fresh = false;
        var read = new KeyValues("--self-train", text, Keys);
        foreach (var (key, value) in read.Pairs(text))
            options = key switch
            {
                "threshold" => options with { Threshold = read.Number(key, value) },
                "share" => options with { UnlabelledShare = read.Number(key, value) },
                "rounds" => options with { Rounds = read.Integer(key, value) },
                "steps" => options with { Steps = read.Integer(key, value) },
                "student" => value switch
                {
                    "teacher" => Fresh(false),
                    "pretrained" => Fresh(true),
                    _ => throw read.Error($"student '{value}' is not teacher or pretrained"),
                },
                _ => throw read.Unknown(key),
            };
        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw read.Error(e.Message);
        }
        return new Request(options, fresh);

        SelfTrainingOptions Fresh(bool value)
        {
            fresh = value;
            return options;
        }
    }

    /// <summary>Every setting, as --self-train spells it (the MLflow param and the JSON report); "none" when off.</summary>
    public static string Describe(Request? request, long maxSteps) => request is not { Options: var o } ? "none"
        : string.Create(CultureInfo.InvariantCulture,
            $"threshold={o.Threshold},share={o.UnlabelledShare},rounds={o.Rounds},steps={o.Steps ?? maxSteps}," +
                $"student={(request.FreshStudent ? "pretrained" : "teacher")}");
}
