using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Medformer.Tests.Tracking;

/// <summary>A request as the fake server saw it.</summary>
sealed record MlflowRequest(string Method, string Path, string Query, string? Authorization, byte[] Body)
{
    public JsonObject Json => Body.Length == 0 ? [] : (JsonObject)JsonNode.Parse(Body)!;

    public string Endpoint => Path.StartsWith("/api/2.0/mlflow-artifacts/", StringComparison.Ordinal) ? "artifacts" : Path["/api/2.0/mlflow/".Length..];
}

/// <summary>What a fault injector answers instead of the server: a status and MLflow's error body, after a delay; or silence.</summary>
sealed record MlflowFault(int Status, string ErrorCode = "INTERNAL_ERROR", TimeSpan Delay = default, bool Stall = false, bool Drop = false);

/// <summary>
/// The tracking server's state, kept apart from the listener so a server can go away and come back on another port
/// with the same runs, as a restarted MLflow server with a database would.
/// </summary>
sealed class MlflowServerState
{
    public readonly object Gate = new();
    public readonly Dictionary<string, JsonObject> Experiments = [];
    public readonly Dictionary<string, FakeRun> Runs = [];
    public readonly Dictionary<string, byte[]> Artifacts = [];
    public readonly List<MlflowRequest> Requests = [];
    int nextExperiment = 1;

    public sealed class FakeRun
    {
        public required JsonObject Info;
        public readonly Dictionary<string, string> Params = [];
        public readonly Dictionary<string, string> Tags = [];
        public readonly List<JsonObject> Metrics = [];
    }

    public (int Status, JsonObject Body) Handle(MlflowRequest request)
    {
        lock (Gate)
        {
            var q = System.Web.HttpUtility.ParseQueryString(request.Query);
            switch (request.Method, request.Endpoint)
            {
                case ("GET", "experiments/get-by-name"):
                    var byName = Experiments.Values.FirstOrDefault(e => (string?)e["name"] == q["experiment_name"]);
                    return byName is null ? Error(404, "RESOURCE_DOES_NOT_EXIST", $"Could not find experiment with name '{q["experiment_name"]}'")
                        : (200, new JsonObject { ["experiment"] = byName.DeepClone() });
                case ("POST", "experiments/create"):
                {
                    string name = (string)request.Json["name"]!;
                    if (Experiments.Values.Any(e => (string?)e["name"] == name)) return Error(400, "RESOURCE_ALREADY_EXISTS",
                        $"Experiment '{name}' already exists.");
                    return (200, new JsonObject { ["experiment_id"] = AddExperiment(name) });
                }
                case ("POST", "experiments/search"):
                    return (200, new JsonObject { ["experiments"] = new JsonArray([.. Experiments.Values.Select(e => e.DeepClone())]) });
                case ("POST", "runs/create"):
                {
                    var body = request.Json;
                    string experiment = (string)body["experiment_id"]!;
                    if (!Experiments.ContainsKey(experiment)) return Error(404, "RESOURCE_DOES_NOT_EXIST", $"No Experiment with id={experiment} exists");
                    string id = Guid.NewGuid().ToString("N");
                    var run = new FakeRun
                    {
                        Info = new JsonObject
                        {
                            ["run_id"] = id, ["run_uuid"] = id, ["run_name"] = body["run_name"]?.DeepClone(), ["experiment_id"] = experiment,
                            ["user_id"] = body["user_id"]?.DeepClone(), ["status"] = "RUNNING", ["start_time"] = body["start_time"]?.DeepClone(),
                            ["artifact_uri"] = $"mlflow-artifacts:/{experiment}/{id}/artifacts", ["lifecycle_stage"] = "active",
                        },
                    };
                    foreach (var tag in body["tags"]?.AsArray() ?? []) run.Tags[(string)tag!["key"]!] = (string)tag["value"]!;
                    Runs[id] = run;
                    return (200, new JsonObject { ["run"] = RunJson(run) });
                }
                case ("POST", "runs/update"):
                {
                    if (!Runs.TryGetValue((string)request.Json["run_id"]!, out var run)) return Error(404, "RESOURCE_DOES_NOT_EXIST", "Run not found");
                    run.Info["status"] = request.Json["status"]!.DeepClone();
                    run.Info["end_time"] = request.Json["end_time"]?.DeepClone();
                    return (200, new JsonObject { ["run_info"] = run.Info.DeepClone() });
                }
                case ("POST", "runs/log-batch"):
                {
                    var body = request.Json;
                    if (!Runs.TryGetValue((string)body["run_id"]!, out var run)) return Error(404, "RESOURCE_DOES_NOT_EXIST", "Run not found");
                    var metrics = body["metrics"]?.AsArray() ?? [];
                    var parameters = body["params"]?.AsArray() ?? [];
                    var tags = body["tags"]?.AsArray() ?? [];
                    if (metrics.Count > 1000 || parameters.Count > 100 || tags.Count > 100 || metrics.Count + parameters.Count + tags.Count > 1000)
                        return Error(400, "INVALID_PARAMETER_VALUE", "A batch logging request can contain at most 1000 metrics, 100 params, 100 tags");
                    foreach (var p in parameters)
                        if (run.Params.TryGetValue((string)p!["key"]!, out string? old) && old != (string)p["value"]!)
                            return Error(400, "INVALID_PARAMETER_VALUE",
                                $"Changing param values is not allowed. Param with key='{p["key"]}' was already logged with value='{old}'");
                    foreach (var p in parameters) run.Params[(string)p!["key"]!] = (string)p["value"]!;
                    foreach (var t in tags) run.Tags[(string)t!["key"]!] = (string)t["value"]!;
                    foreach (var m in metrics) run.Metrics.Add((JsonObject)m!.DeepClone());
                    return (200, []);
                }
                case ("GET", "runs/get"):
                    return Runs.TryGetValue(q["run_id"] ?? "", out var got) ? (200, new JsonObject { ["run"] = RunJson(got) }) : Error(404,
                        "RESOURCE_DOES_NOT_EXIST", "Run not found");
                case ("POST", "runs/search"):
                {
                    var ids = request.Json["experiment_ids"]!.AsArray().Select(i => (string)i!).ToHashSet();
                    return (200, new JsonObject { ["runs"] = new JsonArray([.. Runs.Values.Where(r => ids.Contains((string)r.Info["experiment_id"]!)).Select(r
                        => (JsonNode)RunJson(r))]) });
                }
                case ("GET", "metrics/get-history"):
                {
                    if (!Runs.TryGetValue(q["run_id"] ?? "", out var run)) return Error(404, "RESOURCE_DOES_NOT_EXIST", "Run not found");
                    return (200, new JsonObject { ["metrics"] = new JsonArray([.. run.Metrics.Where(m => (string?)m["key"] == q["metric_key"]).Select(m =>
                        m.DeepClone())]) });
                }
                case ("PUT", "artifacts"):
                    Artifacts[Uri.UnescapeDataString(request.Path["/api/2.0/mlflow-artifacts/artifacts/".Length..])] = request.Body;
                    return (200, []);
                default:
                    return Error(404, "ENDPOINT_NOT_FOUND", $"{request.Method} {request.Path}");
            }
        }
    }

    public string AddExperiment(string name)
    {
        string id = (nextExperiment++).ToString(CultureInfo.InvariantCulture);
        Experiments[id] = new JsonObject
        {
            ["experiment_id"] = id, ["name"] = name, ["artifact_location"] = $"mlflow-artifacts:/{id}", ["lifecycle_stage"] = "active",
            ["creation_time"] = 1, ["last_update_time"] = 1,
        };
        return id;
    }

    static JsonObject RunJson(FakeRun run)
    {
        // MLflow's latest value per key: the largest step, then timestamp.
        var latest = run.Metrics.GroupBy(m => (string)m["key"]!)
            .Select(g => g.OrderBy(m => (long)m["step"]!).ThenBy(m => (long)m["timestamp"]!).Last().DeepClone());
        return new JsonObject
        {
            ["info"] = run.Info.DeepClone(),
            ["data"] = new JsonObject
            {
                ["metrics"] = new JsonArray([.. latest]),
                ["params"] = new JsonArray([.. run.Params.Select(p => (JsonNode)new JsonObject { ["key"] = p.Key, ["value"] = p.Value })]),
                ["tags"] = new JsonArray([.. run.Tags.Select(p => (JsonNode)new JsonObject { ["key"] = p.Key, ["value"] = p.Value })]),
            },
        };
    }

    static (int, JsonObject) Error(int status, string code, string message) => (status, new JsonObject { ["error_code"] = code, ["message"] = message });
}

/// <summary>
/// An MLflow tracking server on 127.0.0.1 for tests: MLflow's REST shapes and errors over a <see cref="MlflowServerState"/>,
/// one request per connection; <c>fault</c> may answer a request instead (an error, a delay, silence).
/// </summary>
sealed class FakeMlflowServer : IDisposable
{
    readonly LoopbackServer server;
    readonly Func<MlflowRequest, MlflowFault?>? fault;

    public FakeMlflowServer(MlflowServerState? state = null, Func<MlflowRequest, MlflowFault?>? fault = null)
    {
        State = state ?? new MlflowServerState();
        this.fault = fault;
        server = new LoopbackServer(Serve);
    }

    public MlflowServerState State { get; }

    public string Url => $"http://127.0.0.1:{server.Port}";

    async Task Serve(TcpClient client, CancellationToken stopping)
    {
        using (client)
        {
            try
            {
                var stream = client.GetStream();
                var head = await LoopbackServer.ReadHead(stream);
                if (head is null) return;
                var lines = head.Split("\r\n");
                var first = lines[0].Split(' ');
                string target = first[1];
                int length = 0;
                string? authorization = null;
                foreach (var line in lines.Skip(1))
                {
                    int colon = line.IndexOf(':');
                    if (colon < 0) continue;
                    string name = line[..colon].Trim(), value = line[(colon + 1)..].Trim();
                    if (name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)) length = int.Parse(value, CultureInfo.InvariantCulture);
                    if (name.Equals("Authorization", StringComparison.OrdinalIgnoreCase)) authorization = value;
                }
                var body = new byte[length];
                await stream.ReadExactlyAsync(body, stopping);
                int q = target.IndexOf('?');
                var request = new MlflowRequest(first[0], q < 0 ? target : target[..q], q < 0 ? "" : target[(q + 1)..], authorization, body);
                lock (State.Gate) State.Requests.Add(request);
                int status;
                JsonObject answer;
                if (fault?.Invoke(request) is { } f)
                {
                    if (f.Delay > TimeSpan.Zero) await Task.Delay(f.Delay, stopping);
                    if (f.Drop)
                    {
                        client.Client.LingerState = new LingerOption(true, 0);  // closed with a reset, no answer
                        return;
                    }
                    if (f.Stall)
                    {
                        await Task.Delay(Timeout.Infinite, stopping);
                        return;
                    }
                    (status, answer) = f.Status == 200 ? State.Handle(request) : (f.Status, new JsonObject { ["error_code"] = f.ErrorCode,
                        ["message"] = "injected" });
                }
                else (status, answer) = State.Handle(request);
                byte[] bytes = Encoding.UTF8.GetBytes(answer.ToJsonString());
                string headers = $"HTTP/1.1 {status} Status\r\nContent-Type: application/json\r\nContent-Length: {bytes.Length}\r\nConnection: close\r\n\r\n";
                await stream.WriteAsync(Encoding.ASCII.GetBytes(headers), stopping);
                await stream.WriteAsync(bytes, stopping);
                await stream.FlushAsync(stopping);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException)
            {
            }
        }
    }

    public void Dispose() => server.Dispose();
}
