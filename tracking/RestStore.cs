using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json.Nodes;

namespace Medformer.Tracking;

/// <summary>
/// MLflow's REST API (<c>/api/2.0/mlflow/…</c>, <c>/api/2.0/mlflow-artifacts/…</c>), one call per method and no
/// retries: <see cref="RestRunSender"/> retries writes in the background, reads retry here a few times. An error
/// is a <see cref="MlflowRestException"/> with the server's <c>error_code</c> and <c>message</c>.
/// </summary>
public sealed class RestStore : ITrackingReader, IDisposable
{
    public const int MaxMetricsPerBatch = 1000;
    public const int MaxParamsPerBatch = 100;
    public const int MaxTagsPerBatch = 100;

    readonly HttpClient client;

    public RestStore(Uri server, RestOptions? options = null)
    {
        Server = server;
        Options = options ?? new RestOptions();
        var handler = new SocketsHttpHandler();
        if (Options.InsecureTls) handler.SslOptions.RemoteCertificateValidationCallback = (_, _, _, _) => true;
        client = new HttpClient(handler) { BaseAddress = server, Timeout = Timeout.InfiniteTimeSpan };
        if (Options.Token is { Length: > 0 } token)
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", token);
        else if (Options.Username is { Length: > 0 } user)
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Basic",
                Convert.ToBase64String(Encoding.UTF8.GetBytes($"{user}:{Options.Password}")));
    }

    public Uri Server { get; }

    public RestOptions Options { get; }

    public string Location => Server.ToString();

    // ---- writes ----

    public Experiment? GetExperimentByName(string name)
    {
        try
        {
            return ParseExperiment(Call(HttpMethod.Get, "api/2.0/mlflow/experiments/get-by-name?experiment_name=" + Uri.EscapeDataString(name))["experiment"]);
        }
        catch (MlflowRestException e) when (e.ErrorCode == "RESOURCE_DOES_NOT_EXIST" || e.Status == 404)
        {
            return null;
        }
    }

    /// <summary>The active experiment of that name, created if missing; another client creating it first is fine.</summary>
    public string GetOrCreateExperiment(string name)
    {
        if (GetExperimentByName(name) is { } found) return found.ExperimentId;
        try
        {
            return Text(Call(HttpMethod.Post, "api/2.0/mlflow/experiments/create", new JsonObject { ["name"] = name })["experiment_id"])
                ?? throw Malformed("experiments/create", "experiment_id");
        }
        catch (MlflowRestException e) when (e.ErrorCode == "RESOURCE_ALREADY_EXISTS")
        {
            if (GetExperimentByName(name) is { } raced) return raced.ExperimentId;
            throw;
        }
    }

    public RunInfo CreateRun(string experimentId, string runName, string userId, long startTime, IReadOnlyDictionary<string, string> tags)
    {
        var body = new JsonObject
        {
            ["experiment_id"] = experimentId,
            ["user_id"] = userId,
            ["run_name"] = runName,
            ["start_time"] = startTime,
            ["tags"] = KeyValues(tags.Append(new(MlflowTags.RunName, runName)).DistinctBy(t => t.Key)),
        };
        var run = Call(HttpMethod.Post, "api/2.0/mlflow/runs/create", body)["run"] ?? throw Malformed("runs/create", "run");
        return ParseRunInfo(run["info"]) ?? throw Malformed("runs/create", "run.info");
    }

    public void UpdateRun(string runId, RunStatus status, long? endTime) =>
        Call(HttpMethod.Post, "api/2.0/mlflow/runs/update", new JsonObject
        {
            ["run_id"] = runId,
            ["run_uuid"] = runId,
            ["status"] = MlflowTags.StatusName(status),
            ["end_time"] = endTime,
        });

    /// <summary>One log-batch call: at most 1000 metrics, 100 params and 100 tags, as MLflow allows.</summary>
    public void LogBatch(string runId, IReadOnlyList<Metric> metrics, IReadOnlyList<KeyValuePair<string, string>> parameters,
        IReadOnlyList<KeyValuePair<string, string>> tags)
    {
        if (metrics.Count > MaxMetricsPerBatch || parameters.Count > MaxParamsPerBatch || tags.Count > MaxTagsPerBatch)
            throw new ArgumentException($"log-batch: {metrics.Count} metrics, {parameters.Count} params, {tags.Count} tags; MLflow " +
                "takes at most 1000, 100, 100 per call");
        var points = new JsonArray();
        foreach (var m in metrics)
            points.Add(new JsonObject { ["key"] = m.Key, ["value"] = JsonDouble(m.Value), ["timestamp"] = m.Timestamp, ["step"] = m.Step });
        Call(HttpMethod.Post, "api/2.0/mlflow/runs/log-batch", new JsonObject
        {
            ["run_id"] = runId,
            ["metrics"] = points,
            ["params"] = KeyValues(parameters),
            ["tags"] = KeyValues(tags),
        });
    }

    /// <summary>Uploads one file to the run's artifact store through the server (<c>mlflow server --serve-artifacts</c>, the default).</summary>
    public void PutArtifact(string artifactUri, string relativePath, string localFile)
    {
        string root = ArtifactRoot(artifactUri);
        string path = string.Join('/', $"{root}/{relativePath}".Split('/', StringSplitOptions.RemoveEmptyEntries).Select(Uri.EscapeDataString));
        using var content = new StreamContent(File.OpenRead(localFile));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        var timeout = Options.RequestTimeout + TimeSpan.FromSeconds(new FileInfo(localFile).Length / 1e6);
        Call(HttpMethod.Put, "api/2.0/mlflow-artifacts/artifacts/" + path, content, timeout);
    }

    /// <summary>The artifact path under <c>/api/2.0/mlflow-artifacts/artifacts/</c> of an <c>mlflow-artifacts:</c> URI.</summary>
    static string ArtifactRoot(string artifactUri)
    {
        const string scheme = "mlflow-artifacts:";
        if (!artifactUri.StartsWith(scheme, StringComparison.Ordinal))
            throw new MlflowRestException(400, "UNSUPPORTED_ARTIFACT_STORE",
                $"the server keeps this run's artifacts at {artifactUri}, which only the server can write; start it with --serve-artifacts " +
                    "(MLflow's default) to upload through it");
        string rest = artifactUri[scheme.Length..];
        if (rest.StartsWith("//", StringComparison.Ordinal))
        {
            int slash = rest.IndexOf('/', 2);
            rest = slash < 0 ? "" : rest[slash..];
        }
        return rest.Trim('/');
    }

    // ---- reads ----

    public IReadOnlyList<Experiment> ListExperiments() =>
        [.. Pages("api/2.0/mlflow/experiments/search", new JsonObject { ["max_results"] = 1000 }, "experiments")
            .Select(ParseExperiment).OfType<Experiment>()];

    public IReadOnlyList<RunInfo> ListRuns(string experimentId) =>
        [.. Pages("api/2.0/mlflow/runs/search", new JsonObject { ["experiment_ids"] = new JsonArray(experimentId), ["max_results"] = 1000 }, "runs")
            .Select(r => ParseRunInfo(r?["info"])).OfType<RunInfo>()];

    public RunRecord GetRun(string runId)
    {
        var run = Read(() => Call(HttpMethod.Get, "api/2.0/mlflow/runs/get?run_id=" + Uri.EscapeDataString(runId)))["run"] ?? throw Malformed("runs/get",
            "run");
        var info = ParseRunInfo(run["info"]) ?? throw Malformed("runs/get", "run.info");
        var data = run["data"];
        var metrics = new Dictionary<string, Metric>();
        foreach (var m in data?["metrics"]?.AsArray() ?? [])
            if (ParseMetric(m) is { } metric) metrics[metric.Key] = metric;
        return new RunRecord(info, Pairs(data?["params"]), Pairs(data?["tags"]), metrics);
    }

    public IReadOnlyList<Metric> GetMetricHistory(string runId, string key)
    {
        var points = new List<Metric>();
        string? token = null;
        do
        {
            string query = $"api/2.0/mlflow/metrics/get-history?run_id={Uri.EscapeDataString(runId)}&metric_key={Uri.EscapeDataString(key)}&max_results=25000"
                + (token is null ? "" : "&page_token=" + Uri.EscapeDataString(token));
            var page = Read(() => Call(HttpMethod.Get, query));
            points.AddRange((page["metrics"]?.AsArray() ?? []).Select(ParseMetric).OfType<Metric>());
            token = Text(page["next_page_token"]);
        }
        while (!string.IsNullOrEmpty(token));
        return points;
    }

    IEnumerable<JsonNode?> Pages(string path, JsonObject body, string field)
    {
        string? token = null;
        do
        {
            var request = (JsonObject)body.DeepClone();
            if (token is not null) request["page_token"] = token;
            var page = Read(() => Call(HttpMethod.Post, path, request));
            foreach (var item in page[field]?.AsArray() ?? []) yield return item;
            token = Text(page["next_page_token"]);
        }
        while (!string.IsNullOrEmpty(token));
    }

    T Read<T>(Func<T> call)
    {
        var wait = Options.FirstBackoff;
        for (int attempt = 1; ; attempt++)
        {
            try
            {
                return call();
            }
            catch (MlflowRestException e) when (e.Retryable && attempt < Options.ReadAttempts)
            {
                Thread.Sleep(wait);
                wait = Options.NextBackoff(wait);
            }
        }
    }

    // ---- HTTP ----

    JsonObject Call(HttpMethod method, string path, JsonObject? body = null) =>
        Call(method, path, body is null ? null : new StringContent(body.ToJsonString(), Encoding.UTF8, "application/json"), Options.RequestTimeout);

    JsonObject Call(HttpMethod method, string path, HttpContent? content, TimeSpan timeout)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        using var cancel = new CancellationTokenSource(timeout);
        string endpoint = path.Split('?')[0];
        HttpResponseMessage response;
        string text;
        try
        {
            response = client.Send(request, HttpCompletionOption.ResponseContentRead, cancel.Token);
            using var reader = new StreamReader(response.Content.ReadAsStream(cancel.Token));
            text = reader.ReadToEnd();
        }
        catch (OperationCanceledException e)
        {
            throw new MlflowRestException(0, "TIMEOUT", $"{Server}{endpoint}: no answer within {timeout.TotalSeconds:0.#} s", e);
        }
        catch (Exception e) when (e is HttpRequestException or IOException)
        {
            throw new MlflowRestException(0, "UNREACHABLE", $"{Server}{endpoint}: {e.Message}", e);
        }
        using (response)
        {
            JsonNode? json = null;
            try
            {
                json = text.Length == 0 ? new JsonObject() : JsonNode.Parse(text);
            }
            catch (System.Text.Json.JsonException)
            {
            }
            if (!response.IsSuccessStatusCode)
            {
                string? code = json is JsonObject o ? Text(o["error_code"]) : null;
                string message = json is JsonObject m && Text(m["message"]) is { } said ? said : text.Length > 200 ? text[..200] : text;
                throw new MlflowRestException((int)response.StatusCode, code,
                    $"{Server}{endpoint}: {(int)response.StatusCode} {code ?? response.ReasonPhrase}: {message}".TrimEnd(' ', ':'));
            }
            return json as JsonObject ?? throw new MlflowRestException((int)response.StatusCode, "MALFORMED",
                $"{Server}{endpoint}: the answer is not a JSON object");
        }
    }

    MlflowRestException Malformed(string endpoint, string field) =>
        new((int)HttpStatusCode.OK, "MALFORMED", $"{Server}api/2.0/mlflow/{endpoint}: the answer has no '{field}'");

    // ---- JSON shapes (protobuf's JSON: int64 may come as a string, doubles as "NaN"/"Infinity") ----

    static JsonArray KeyValues(IEnumerable<KeyValuePair<string, string>> pairs) =>
        [.. pairs.Select(p => (JsonNode)new JsonObject { ["key"] = p.Key, ["value"] = p.Value })];

    static Dictionary<string, string> Pairs(JsonNode? array) =>
        (array?.AsArray() ?? []).Where(p => Text(p?["key"]) is not null)
            .ToDictionary(p => Text(p!["key"])!, p => Text(p!["value"]) ?? "", StringComparer.Ordinal);

    internal static JsonNode JsonDouble(double value) =>
        double.IsNaN(value) ? "NaN" : double.IsPositiveInfinity(value) ? "Infinity" : double.IsNegativeInfinity(value) ? "-Infinity" : JsonValue.Create(value);

    internal static double? Double(JsonNode? node) => node switch
    {
        null => null,
        JsonValue v when v.TryGetValue<double>(out double d) => d,
        JsonValue v when v.TryGetValue<string>(out string? s) => s switch
        {
            "NaN" => double.NaN,
            "Infinity" => double.PositiveInfinity,
            "-Infinity" => double.NegativeInfinity,
            _ => double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out double d) ? d : null,
        },
        _ => null,
    };

    internal static long? Long(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue<long>(out long n) => n,
        JsonValue v when v.TryGetValue<double>(out double d) => (long)d,
        JsonValue v when v.TryGetValue<string>(out string? s) && long.TryParse(s, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long n) => n,
        _ => null,
    };

    internal static string? Text(JsonNode? node) => node switch
    {
        JsonValue v when v.TryGetValue<string>(out string? s) => s,
        JsonValue v => v.ToJsonString(),
        _ => null,
    };

    static Experiment? ParseExperiment(JsonNode? e) => e is null || Text(e["experiment_id"]) is not { } id ? null
        : new Experiment(id, Text(e["name"]) ?? "", Text(e["artifact_location"]) ?? "", Text(e["lifecycle_stage"]) ?? "active",
            Long(e["creation_time"]), Long(e["last_update_time"]));

    static RunInfo? ParseRunInfo(JsonNode? i) => i is null || (Text(i["run_id"]) ?? Text(i["run_uuid"])) is not { } id ? null
        : new RunInfo(id, Text(i["experiment_id"]) ?? "", Text(i["run_name"]) ?? "", Text(i["user_id"]) ?? "",
            Text(i["status"]) is { } status ? MlflowTags.ParseStatus(status) : RunStatus.Running, Long(i["start_time"]) ?? 0, Long(i["end_time"]),
            Text(i["artifact_uri"]) ?? "", Text(i["lifecycle_stage"]) ?? "active");

    static Metric? ParseMetric(JsonNode? m) => m is null || Text(m["key"]) is not { } key ? null
        : new Metric(key, Double(m["value"]) ?? double.NaN, Long(m["timestamp"]) ?? 0, Long(m["step"]) ?? 0);

    public void Dispose() => client.Dispose();
}
