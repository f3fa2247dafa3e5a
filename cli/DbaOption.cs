using System.CommandLine;
using System.Globalization;
using Medformer.Training;

namespace Medformer.Cli;

/// <summary>
/// <c>--dba dba|edba[:key=value,…]</c>: Dynamic Batch Adaptation for fine-tuning. <c>dba</c> scores subsets per layer
/// (scope full), <c>edba</c> on the head's output layer (scope last_layer); the keys are the run config's
/// batch_adaptation keys (strategy, candidates, min_batch, max_batch, initial_batch, delta, grow_above, shrink_below,
/// window, min_selected), max_batch defaulting to --batch-size.
/// </summary>
static class DbaOption
{
    const string Keys = "strategy, candidates, min_batch, max_batch, initial_batch, delta, grow_above, shrink_below, window, min_selected";

    public static Option<string?> Create() => new("--dba")
    {
        Description = "Dynamic Batch Adaptation (off by default): dba (per-sample gradients of every layer) or edba (of the head's output layer), "
            + "optionally :strategy=gradient_norm|variance_norm|variance|gradient_sum,candidates=N,min_batch=N,max_batch=N,initial_batch=N,delta=N,"
            + "grow_above=X,shrink_below=X,window=N,min_selected=X (the run config's batch_adaptation keys; max_batch: --batch-size).",
    };

    /// <summary>The options --dba asks for (null when absent or none); any bad value is an ArgumentException naming --dba.</summary>
    public static BatchAdaptationOptions? Parse(string? text, int batchSize)
    {
        if (text is null or "none") return null;
        var parts = text.Split(':', 2);
        var options = new BatchAdaptationOptions
        {
            Scope = parts[0] switch
            {
                "dba" => AdaptationScope.Full,
                "edba" => AdaptationScope.LastLayer,
                _ => throw new ArgumentException($"--dba '{text}': expected dba or edba, optionally followed by :key=value,… ({Keys})"),
            },
            MaxBatch = batchSize,
        };
        var read = new KeyValues("--dba", text, Keys);
        if (parts.Length == 2)
            foreach (var (key, value) in read.Pairs(parts[1]))
                options = key switch
                {
                    "strategy" => options with { Strategy = BatchAdaptationOptions.ParseStrategy(value, "--dba strategy") },
                    "candidates" => options with { Candidates = read.Integer(key, value) },
                    "min_batch" => options with { MinBatch = read.Integer(key, value) },
                    "max_batch" => options with { MaxBatch = read.Integer(key, value) },
                    "initial_batch" => options with { InitialBatch = read.Integer(key, value) },
                    "delta" => options with { Delta = read.Integer(key, value) },
                    "grow_above" => options with { GrowAbove = read.Number(key, value) },
                    "shrink_below" => options with { ShrinkBelow = read.Number(key, value) },
                    "window" => options with { Window = read.Integer(key, value) },
                    "min_selected" => options with { MinSelected = read.Number(key, value) },
                    _ => throw read.Unknown(key),
                };
        options.Validate("--dba");
        if (options.MaxBatch > batchSize)
            throw new ArgumentException($"--dba max_batch {options.MaxBatch} must not exceed --batch-size {batchSize} (the loader's batches)");
        return options.Enabled ? options : null;
    }

    /// <summary>Every setting, as --dba spells it (the MLflow param and the JSON report); "none" when off.</summary>
    public static string Describe(BatchAdaptationOptions? options)
    {
        if (options is not { Enabled: true } o) return "none";
        string Number(double x) => x.ToString(CultureInfo.InvariantCulture);
        return $"{(o.Scope == AdaptationScope.Full ? "dba" : "edba")}:strategy={BatchAdaptationOptions.Name(o.Strategy)},candidates={o.Candidates},"
            + $"min_batch={o.MinBatch},max_batch={o.MaxBatch},initial_batch={o.InitialBatch},delta={o.Delta},grow_above={Number(o.GrowAbove)},"
            + $"shrink_below={Number(o.ShrinkBelow)},window={o.Window},min_selected={Number(o.MinSelected)}";
    }
}
