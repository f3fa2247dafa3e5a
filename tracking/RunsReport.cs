using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;

namespace Medformer.Tracking;

/// <summary>
/// What <c>medformer runs list | show | compare</c> print, from any store: runs with status, start, duration and
/// final metrics; one run's params, tags and metrics (final and best); runs side by side with the params that differ
/// marked, and a plot of chosen metrics over steps. "Best" is the lowest value for metrics whose name says loss,
/// error or distance (loss, error, err, mse, mae, nll, perplexity, distance, hd95), the highest for the others.
/// </summary>
public sealed class RunsReport(ITrackingReader reader)
{
    static readonly CultureInfo Inv = CultureInfo.InvariantCulture;
    static readonly string[] LowerIsBetterWords = ["loss", "error", "err", "mse", "mae", "nll", "perplexity", "distance", "hd95"];

    public ITrackingReader Reader { get; } = reader;

    /// <summary>Every experiment that has runs, with its runs (newest first).</summary>
    public List<(Experiment Experiment, List<RunRecord> Runs)> List(string? experiment = null)
    {
        var result = new List<(Experiment, List<RunRecord>)>();
        foreach (var e in Reader.ListExperiments())
        {
            if (experiment is not null && e.Name != experiment && e.ExperimentId != experiment) continue;
            var runs = Reader.ListRuns(e.ExperimentId).Select(r => Reader.GetRun(r.RunId)).ToList();
            if (runs.Count > 0 || experiment is not null) result.Add((e, runs));
        }
        if (experiment is not null && result.Count == 0) throw new ArgumentException($"no experiment '{experiment}' in {Reader.Location}");
        return result;
    }

    /// <summary>A run by its id, its name (when one run has it), or a unique prefix of its id, in that order; a name two runs share is an error listing
    /// them.</summary>
    public RunRecord Resolve(string reference)
    {
        var all = Reader.ListExperiments().SelectMany(e => Reader.ListRuns(e.ExperimentId)).ToList();
        if (all.FirstOrDefault(r => r.RunId == reference) is { } byId) return Reader.GetRun(byId.RunId);
        var named = all.Where(r => r.RunName == reference).OrderByDescending(r => r.StartTime).ToList();
        if (named.Count == 1) return Reader.GetRun(named[0].RunId);
        if (named.Count > 1)
            throw new ArgumentException($"run '{reference}': {named.Count} runs have that name " +
                $"({string.Join(", ", named.Take(5).Select(r => $"{Short(r.RunId)} started {Time(r.StartTime)}"))}); give an id or a unique prefix of one");
        var byPrefix = all.Where(r => r.RunId.StartsWith(reference, StringComparison.OrdinalIgnoreCase)).ToList();
        if (byPrefix.Count == 1) return Reader.GetRun(byPrefix[0].RunId);
        if (byPrefix.Count > 1)
            throw new ArgumentException($"run '{reference}': {byPrefix.Count} runs' ids start so " +
                $"({string.Join(", ", byPrefix.Take(5).Select(r => r.RunId))}); give more of the id");
        throw new ArgumentException($"run '{reference}': no run of that id or name in {Reader.Location}");
    }

    public static bool LowerIsBetter(string key)
    {
        string k = key.ToLowerInvariant();
        return k.Split('/', '_', '.', '-', ' ').Any(LowerIsBetterWords.Contains) || k.Contains("loss", StringComparison.Ordinal) || k.Contains("error",
            StringComparison.Ordinal);
    }

    /// <summary>A metric's final point (MLflow's latest: largest step, then time) and its best one.</summary>
    public (Metric Final, Metric? Best, int Points) Summarize(RunRecord run, string key)
    {
        var history = Reader.GetMetricHistory(run.Info.RunId, key);
        var final = run.Metrics.TryGetValue(key, out var latest) ? latest : history.MaxBy(m => (m.Step, m.Timestamp))!;
        var finite = history.Where(m => !double.IsNaN(m.Value)).ToList();
        Metric? best = finite.Count == 0 ? null : LowerIsBetter(key) ? finite.MinBy(m => m.Value) : finite.MaxBy(m => m.Value);
        return (final, best, history.Count);
    }

    // ---- text ----

    const int ListedMetrics = 6;

    /// <summary>Metric names, headline first: test metrics, then validation, then the loss, then the rest (each by name).</summary>
    public static IEnumerable<string> Headline(IEnumerable<string> keys) => keys.OrderBy(k =>
        k.StartsWith("test_", StringComparison.Ordinal) || k.StartsWith("test/", StringComparison.Ordinal) ? 0
        : k.StartsWith("val_", StringComparison.Ordinal) || k.StartsWith("val/", StringComparison.Ordinal) || k.StartsWith("validation",
            StringComparison.Ordinal) ? 1
        : k == "loss" ? 2 : k.StartsWith("loss", StringComparison.Ordinal) ? 3 : 4).ThenBy(k => k, StringComparer.Ordinal);

    public string FormatList(List<(Experiment Experiment, List<RunRecord> Runs)> experiments)
    {
        var text = new StringBuilder();
        foreach (var (experiment, runs) in experiments)
        {
            text.Append($"experiment {experiment.Name} (id {experiment.ExperimentId}): {runs.Count} run{(runs.Count == 1 ? "" : "s")}\n");
            var rows = runs.Select(r =>
            {
                var headline = Headline(r.Metrics.Keys).ToList();
                int shared = runs.Count(o => o.Info.RunName == r.Info.RunName);
                return new[]
                {
                    Short(r.Info.RunId), shared > 1 ? $"{r.Info.RunName} (1 of {shared} so named)" : r.Info.RunName, MlflowTags.StatusName(r.Info.Status),
                    Time(r.Info.StartTime), Duration(r.Info),
                    string.Join("  ", headline.Take(ListedMetrics).Select(k => $"{k} {Number(r.Metrics[k].Value)}"))
                        + (headline.Count > ListedMetrics ? $"  … {headline.Count - ListedMetrics} more (runs show {Short(r.Info.RunId)})" : ""),
                };
            }).ToList();
            text.Append(Table(["run", "name", "status", "start", "duration", "final metrics"], rows, indent: "  "));
        }
        if (experiments.Count == 0) text.Append($"no runs in {Reader.Location}\n");
        return text.ToString();
    }

    public string FormatShow(RunRecord run)
    {
        var info = run.Info;
        var text = new StringBuilder();
        text.Append($"run {info.RunId} \"{info.RunName}\" in experiment {ExperimentName(info.ExperimentId)}\n");
        text.Append($"  status {MlflowTags.StatusName(info.Status)}, user {info.UserId}, started {Time(info.StartTime)}, ");
        text.Append(info.EndTime is { } end ? $"ended {Time(end)}, took {Duration(info)}\n" : $"not ended ({Duration(info)} so far)\n");
        text.Append($"  artifacts {info.ArtifactUri}\n");
        if (run.Params.Count > 0)
        {
            text.Append("params\n");
            text.Append(Table(["key", "value"], [.. run.Params.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => new[] { p.Key, p.Value })], "  "));
        }
        if (run.Metrics.Count > 0)
        {
            text.Append("metrics\n");
            var rows = run.Metrics.Keys.Order(StringComparer.Ordinal).Select(key =>
            {
                var (final, best, points) = Summarize(run, key);
                return new[] { key, Number(final.Value), final.Step.ToString(Inv), best is null ? "" : Number(best.Value), best?.Step.ToString(Inv) ?? "",
                    points.ToString(Inv) };
            }).ToList();
            text.Append(Table(["key", "final", "at step", "best", "at step", "points"], rows, "  "));
        }
        if (run.Tags.Count > 0)
        {
            text.Append("tags\n");
            text.Append(Table(["key", "value"], [.. run.Tags.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => new[] { t.Key, OneLine(t.Value) })],
                "  "));
        }
        return text.ToString();
    }

    /// <summary>Runs side by side: params (a '*' marks those that differ), then each metric's final and best value.</summary>
    public string FormatCompare(IReadOnlyList<RunRecord> runs, IReadOnlyList<string>? metrics = null)
    {
        var header = new[] { "" }.Concat(runs.Select(r => $"{r.Info.RunName} ({Short(r.Info.RunId)})")).ToArray();
        var rows = new List<string[]>
        {
            Row("status", runs.Select(r => MlflowTags.StatusName(r.Info.Status))),
            Row("start", runs.Select(r => Time(r.Info.StartTime))),
            Row("duration", runs.Select(r => Duration(r.Info))),
        };
        foreach (string key in DifferingFirst(runs))
        {
            bool differs = Differs(runs, key);
            rows.Add(Row($"{(differs ? "* " : "  ")}{key}", runs.Select(r => r.Params.GetValueOrDefault(key) ?? "–")));
        }
        foreach (string key in metrics ?? MetricKeys(runs))
        {
            var summaries = runs.Select(r => r.Metrics.ContainsKey(key) ? Summarize(r, key) : ((Metric, Metric?, int)?)null).ToList();
            rows.Add(Row($"{key} (final)", summaries.Select(s => s is { } v ? $"{Number(v.Item1.Value)} @{v.Item1.Step}" : "–")));
            rows.Add(Row($"{key} (best {(LowerIsBetter(key) ? "min" : "max")})", summaries.Select(s => s is { Item2: { } b } ? $"{Number(b.Value)} @{b.Step}" :
                "–")));
        }
        int differing = ParamKeys(runs).Count(k => Differs(runs, k));
        return Table(header, rows) + $"{differing} param{(differing == 1 ? "" : "s")} differ (marked *)\n";
    }

    /// <summary>Plots <paramref name="metrics"/> over steps, one panel per metric and one line per run in each.</summary>
    public void Plot(IReadOnlyList<RunRecord> runs, IReadOnlyList<string> metrics, string path)
    {
        var panels = new List<(string, IReadOnlyList<(string, IReadOnlyList<Metric>)>)>();
        foreach (string key in metrics)
        {
            var series = runs.Where(r => r.Metrics.ContainsKey(key))
                .Select(r => (Label(r, runs), (IReadOnlyList<Metric>)Reader.GetMetricHistory(r.Info.RunId, key))).ToList();
            if (series.Count > 0) panels.Add((key, series));
        }
        if (panels.Count == 0) throw new ArgumentException($"--metric {string.Join(", ", metrics)}: none of the runs logged it");
        MetricPlot.Save(path, panels);
    }

    /// <summary>A run's name, with its short id where another of the runs shown has the same name.</summary>
    static string Label(RunRecord run, IReadOnlyList<RunRecord> runs) =>
        runs.Count(r => r.Info.RunName == run.Info.RunName) > 1 ? $"{run.Info.RunName} ({Short(run.Info.RunId)})" : run.Info.RunName;

    /// <summary>The metrics to compare and plot by default: those every run has, else all.</summary>
    public static List<string> MetricKeys(IReadOnlyList<RunRecord> runs)
    {
        var common = runs.Select(r => r.Metrics.Keys).Aggregate((a, b) => a.Intersect(b)).Order(StringComparer.Ordinal).ToList();
        return common.Count > 0 ? common : [.. runs.SelectMany(r => r.Metrics.Keys).Distinct().Order(StringComparer.Ordinal)];
    }

    static IEnumerable<string> ParamKeys(IReadOnlyList<RunRecord> runs) => runs.SelectMany(r => r.Params.Keys).Distinct().Order(StringComparer.Ordinal);

    static IEnumerable<string> DifferingFirst(IReadOnlyList<RunRecord> runs) => ParamKeys(runs).OrderBy(k => Differs(runs, k) ? 0 : 1);

    static bool Differs(IReadOnlyList<RunRecord> runs, string key) => runs.Select(r => r.Params.GetValueOrDefault(key)).Distinct().Count() > 1;

    // ---- JSON (--json) ----

    public JsonObject ListJson(List<(Experiment Experiment, List<RunRecord> Runs)> experiments) => new()
    {
        ["tracking_uri"] = Reader.Location,
        ["experiments"] = new JsonArray([.. experiments.Select(e => (JsonNode)new JsonObject
        {
            ["experiment_id"] = e.Experiment.ExperimentId,
            ["name"] = e.Experiment.Name,
            ["runs"] = new JsonArray([.. e.Runs.Select(r => (JsonNode)InfoJson(r.Info, new JsonObject(r.Metrics.Values.Select(m =>
                KeyValuePair.Create(m.Key, (JsonNode?)RestStore.JsonDouble(m.Value))))))]),
        })]),
    };

    public JsonObject RunJson(RunRecord run)
    {
        var metrics = new JsonObject();
        foreach (string key in run.Metrics.Keys.Order(StringComparer.Ordinal))
        {
            var (final, best, points) = Summarize(run, key);
            metrics[key] = new JsonObject
            {
                ["final"] = RestStore.JsonDouble(final.Value),
                ["final_step"] = final.Step,
                ["best"] = best is null ? null : RestStore.JsonDouble(best.Value),
                ["best_step"] = best?.Step,
                ["points"] = points,
            };
        }
        var json = InfoJson(run.Info, metrics);
        json["params"] = new JsonObject(run.Params.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value)));
        json["tags"] = new JsonObject(run.Tags.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value)));
        return json;
    }

    public JsonObject CompareJson(IReadOnlyList<RunRecord> runs, IEnumerable<string> plots) => new()
    {
        ["runs"] = new JsonArray([.. runs.Select(r => (JsonNode)RunJson(r))]),
        ["differing_params"] = new JsonArray([.. ParamKeys(runs).Where(k => Differs(runs, k)).Select(k => (JsonNode)k)]),
        ["plots"] = new JsonArray([.. plots.Select(p => (JsonNode)Path.GetFullPath(p))]),
    };

    static JsonObject InfoJson(RunInfo info, JsonObject metrics) => new()
    {
        ["run_id"] = info.RunId,
        ["run_name"] = info.RunName,
        ["experiment_id"] = info.ExperimentId,
        ["status"] = MlflowTags.StatusName(info.Status),
        ["user_id"] = info.UserId,
        ["start_time"] = info.StartTime,
        ["end_time"] = info.EndTime,
        ["duration_s"] = ((info.EndTime ?? FileStore.Now()) - info.StartTime) / 1000.0,
        ["artifact_uri"] = info.ArtifactUri,
        ["metrics"] = metrics,
    };

    // ---- formatting ----

    string ExperimentName(string id) => Reader.ListExperiments().FirstOrDefault(e => e.ExperimentId == id) is { } e ? $"{e.Name} (id {id})" : id;

    static string[] Row(string label, IEnumerable<string> cells) => [label, .. cells];

    static string Short(string runId) => runId.Length > 8 ? runId[..8] : runId;

    static string Time(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).ToLocalTime().ToString("yyyy-MM-dd HH:mm:ss", Inv);

    static string Duration(RunInfo info)
    {
        var span = TimeSpan.FromMilliseconds(Math.Max(0, (info.EndTime ?? FileStore.Now()) - info.StartTime));
        return $"{(int)span.TotalHours:00}:{span.Minutes:00}:{span.Seconds:00}";
    }

    public static string Number(double value) => double.IsFinite(value) ? value.ToString("G6", Inv).Replace('E', 'e') : PythonFloat.Format(value);

    static string OneLine(string text) => text.Length > 80 || text.Contains('\n') ? text.Split('\n')[0][..Math.Min(77,
        text.Split('\n')[0].Length)] + "…" : text;

    static string Table(string[] header, List<string[]> rows, string indent = "")
    {
        var widths = header.Select((h, i) => Math.Max(h.Length, rows.Count == 0 ? 0 : rows.Max(r => r[i].Length))).ToArray();
        var text = new StringBuilder();
        foreach (var row in rows.Prepend(header))
            text.Append(indent).Append(string.Join("  ", row.Select((cell, i) => i == row.Length - 1 ? cell :
                cell.PadRight(widths[i]))).TrimEnd()).Append('\n');
        return text.ToString();
    }
}
