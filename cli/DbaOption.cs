using System.CommandLine;
using System.Globalization;
using Medformer.Pretrain.Training;

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
        if (parts.Length == 2)
            foreach (var pair in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var kv = pair.Split('=', 2);
                if (kv.Length != 2 || kv[0].Length == 0) throw new ArgumentException($"--dba '{text}': '{pair}' is not key=value");
                string key = kv[0], value = kv[1];
                int Integer() => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n
                    : throw new ArgumentException($"--dba '{text}': {key} '{value}' is not an integer");
                double Number() => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) ? x
                    : throw new ArgumentException($"--dba '{text}': {key} '{value}' is not a number");
                options = key switch
                {
                    "strategy" => options with { Strategy = BatchAdaptationOptions.ParseStrategy(value, "--dba strategy") },
                    "candidates" => options with { Candidates = Integer() },
                    "min_batch" => options with { MinBatch = Integer() },
                    "max_batch" => options with { MaxBatch = Integer() },
                    "initial_batch" => options with { InitialBatch = Integer() },
                    "delta" => options with { Delta = Integer() },
                    "grow_above" => options with { GrowAbove = Number() },
                    "shrink_below" => options with { ShrinkBelow = Number() },
                    "window" => options with { Window = Integer() },
                    "min_selected" => options with { MinSelected = Number() },
                    _ => throw new ArgumentException($"--dba '{text}': unknown key '{key}' (expected {Keys})"),
                };
            }
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
