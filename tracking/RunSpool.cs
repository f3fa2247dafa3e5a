using System.Text;
using System.Text.Json.Nodes;

namespace Medformer.Tracking;

/// <summary>
/// The write-ahead journal of a run sent to a tracking server (JSON lines): the run's start, then every entry as it
/// is logged, before any network call, then marks of what the server has taken. A run that ends with everything
/// sent deletes it; otherwise it stays (also after a crash or kill -9) and
/// <c>medformer runs replay FILE</c> (<see cref="Replay"/>) sends what is left.
/// <code>
/// {"op":"start","server":"http://…","experiment":"pretrain","run_name":"…","user":"…","start_time":1700000000000,"tags":{…}}
/// {"op":"created","run_id":"…","experiment_id":"…","artifact_uri":"mlflow-artifacts:/…"}
/// {"seq":1,"metric":{"key":"loss","value":0.5,"timestamp":1700000000000,"step":10}}
/// {"op":"done","through":1}                                   entries up to 1 are on the server
/// {"op":"rejected","from":2,"through":2,"error":"…"}          the server refused them (kept here, not retried)
/// </code>
/// </summary>
sealed class RunSpool : IDisposable
{
    readonly FileStream stream;

    RunSpool(string path)
    {
        Path = path;
        // The user's alone: it holds the run's params and metrics and the paths of its files.
        var options = new FileStreamOptions { Mode = FileMode.Append, Access = FileAccess.Write, Share = FileShare.Read };
        if (!OperatingSystem.IsWindows()) options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        stream = new FileStream(path, options);
    }

    public string Path { get; }

    public static RunSpool Create(string directory, RunStart start)
    {
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(directory);
        else Directory.CreateDirectory(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        string name = $"mlflow-spool-{DateTime.UtcNow:yyyyMMdd-HHmmss}-{Guid.NewGuid().ToString("N")[..8]}.jsonl";
        var spool = new RunSpool(System.IO.Path.Combine(System.IO.Path.GetFullPath(directory), name));
        spool.Append([start.ToJson()]);
        return spool;
    }

    public static RunSpool Open(string path) => new(path);

    /// <summary>Appends whole lines in one write, flushed to the OS: a crash keeps every line written before it.</summary>
    public void Append(IEnumerable<JsonObject> lines)
    {
        var text = new StringBuilder();
        foreach (var line in lines) text.Append(line.ToJsonString()).Append('\n');
        stream.Write(Encoding.UTF8.GetBytes(text.ToString()));
        stream.Flush();
    }

    /// <summary>Whether <paramref name="path"/>, with its links resolved, lies inside <paramref name="folder"/>.</summary>
    static bool Inside(string path, string folder)
    {
        string full = System.IO.Path.GetFullPath(path);
        try
        {
            if (new FileInfo(full).ResolveLinkTarget(returnFinalTarget: true) is { } file) full = file.FullName;
            else if (new DirectoryInfo(full).ResolveLinkTarget(returnFinalTarget: true) is { } directory) full = directory.FullName;
        }
        catch (IOException)
        {
            return false;
        }
        string root = System.IO.Path.TrimEndingDirectorySeparator(System.IO.Path.GetFullPath(folder)) + System.IO.Path.DirectorySeparatorChar;
        return full.StartsWith(root, StringComparison.Ordinal);
    }

    public void Created(RunInfo run) => Append([new JsonObject
    {
        ["op"] = "created",
        ["run_id"] = run.RunId,
        ["experiment_id"] = run.ExperimentId,
        ["artifact_uri"] = run.ArtifactUri,
    }]);

    public void Done(long through) => Append([new JsonObject { ["op"] = "done", ["through"] = through }]);

    public void Rejected(long from, long through, string error) =>
        Append([new JsonObject { ["op"] = "rejected", ["from"] = from, ["through"] = through, ["error"] = error }]);

    public void Dispose() => stream.Dispose();

    public void Delete()
    {
        stream.Dispose();
        File.Delete(Path);
    }

    /// <summary>What a spool file holds: the start, the run if the server made it, and the entries not yet sent.</summary>
    public static (RunStart Start, RunInfo? Created, List<SpoolEntry> Unsent, long LastSeq) Load(string path)
    {
        if (!File.Exists(path)) throw new ArgumentException($"spool file {path}: no such file");
        RunStart? start = null;
        RunInfo? created = null;
        var entries = new List<SpoolEntry>();
        long done = 0;
        int number = 0;
        foreach (string line in File.ReadLines(path))
        {
            number++;
            if (line.Length == 0) continue;
            string where = $"{path} (line {number})";
            JsonNode json;
            try
            {
                json = JsonNode.Parse(line) ?? throw new InvalidDataException($"{where}: empty");
            }
            catch (System.Text.Json.JsonException) when (number > 1)
            {
                continue;  // a line cut by a crash mid-write: nothing after it was written either
            }
            catch (System.Text.Json.JsonException e)
            {
                throw new InvalidDataException($"{where}: not a spool file ({e.Message})", e);
            }
            switch (RestStore.Text(json["op"]))
            {
                case "start": start = RunStart.FromJson(json, where); break;
                case "created":
                    created = new RunInfo(RestStore.Text(json["run_id"]) ?? "", RestStore.Text(json["experiment_id"]) ?? "", start?.RunName ?? "",
                        start?.User ?? "", RunStatus.Running, start?.StartTime ?? 0, null, RestStore.Text(json["artifact_uri"]) ?? "", "active");
                    break;
                case "done" or "rejected": done = Math.Max(done, RestStore.Long(json["through"]) ?? 0); break;
                default: entries.Add(SpoolEntry.FromJson(json, where)); break;
            }
        }
        if (start is null) throw new InvalidDataException($"{path}: not a spool file (no start line)");
        return (start, created, [.. entries.Where(e => e.Seq > done)], entries.Count == 0 ? 0 : entries.Max(e => e.Seq));
    }

    /// <summary>
    /// Sends what a spool file holds that the server has not taken, to <paramref name="server"/>. Artifacts must lie in
    /// the run's folder (the one holding the spool's folder): a file that names others is refused before anything is sent.
    /// </summary>
    public static TrackingOutcome Replay(string path, Uri server, RestOptions? options = null)
    {
        var (start, created, unsent, lastSeq) = Load(path);
        string runFolder = System.IO.Path.GetDirectoryName(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!)!;
        foreach (var artifact in unsent.Select(e => e.Artifact).OfType<ArtifactUpload>())
            if (!Inside(artifact.LocalPath, runFolder))
                throw new InvalidDataException($"{path}: artifact {artifact.LocalPath} is outside the run's folder {runFolder}; refusing to send anything");
        var store = new RestStore(server, options);
        using var sender = new RestRunSender(store, Open(path), start, new TrackingFaults(message => Console.Error.WriteLine(message)), created, unsent,
            lastSeq);
        return sender.Drain();
    }
}

/// <summary>What creating the run on the server needs.</summary>
sealed record RunStart(Uri Server, string Experiment, string RunName, string User, long StartTime, IReadOnlyDictionary<string, string> Tags)
{
    public JsonObject ToJson()
    {
        var tags = new JsonObject();
        foreach (var (key, value) in Tags) tags[key] = value;
        return new JsonObject
        {
            ["op"] = "start",
            ["server"] = Server.ToString(),
            ["experiment"] = Experiment,
            ["run_name"] = RunName,
            ["user"] = User,
            ["start_time"] = StartTime,
            ["tags"] = tags,
        };
    }

    public static RunStart FromJson(JsonNode json, string where)
    {
        string Field(string name) => RestStore.Text(json[name]) ?? throw new InvalidDataException($"{where}: the start line has no '{name}'");
        var tags = (json["tags"] as JsonObject ?? []).ToDictionary(t => t.Key, t => RestStore.Text(t.Value) ?? "", StringComparer.Ordinal);
        return new RunStart(new Uri(Field("server")), Field("experiment"), Field("run_name"), Field("user"), RestStore.Long(json["start_time"]) ?? 0, tags);
    }
}
