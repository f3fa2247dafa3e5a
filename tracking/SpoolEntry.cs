using System.Text.Json.Nodes;

namespace Medformer.Tracking;

/// <summary>One thing a run logs, numbered in the order it was logged: a metric point, a param, a tag, an artifact or the run's end.</summary>
sealed record SpoolEntry(long Seq, Metric? Metric = null, KeyValuePair<string, string>? Param = null, KeyValuePair<string, string>? Tag = null,
    ArtifactUpload? Artifact = null, RunEnd? End = null)
{
    public bool IsData => Metric is not null || Param is not null || Tag is not null;

    public JsonObject ToJson()
    {
        var json = new JsonObject { ["seq"] = Seq };
        if (Metric is { } m) json["metric"] = new JsonObject { ["key"] = m.Key, ["value"] = RestStore.JsonDouble(m.Value), ["timestamp"] = m.Timestamp,
            ["step"] = m.Step };
        if (Param is { } p) json["param"] = new JsonObject { ["key"] = p.Key, ["value"] = p.Value };
        if (Tag is { } t) json["tag"] = new JsonObject { ["key"] = t.Key, ["value"] = t.Value };
        if (Artifact is { } a) json["artifact"] = new JsonObject { ["local"] = a.LocalPath, ["path"] = a.ArtifactPath, ["folder"] = a.Folder };
        if (End is { } e) json["end"] = new JsonObject { ["status"] = MlflowTags.StatusName(e.Status), ["end_time"] = e.EndTime };
        return json;
    }

    public static SpoolEntry FromJson(JsonNode json, string where)
    {
        long seq = RestStore.Long(json["seq"]) ?? throw new InvalidDataException($"{where}: an entry without 'seq'");
        string Key(JsonNode node) => RestStore.Text(node["key"]) ?? throw new InvalidDataException($"{where}: an entry without 'key'");
        if (json["metric"] is { } m) return new(seq, Metric: new Metric(Key(m), RestStore.Double(m["value"]) ?? double.NaN, RestStore.Long(m["timestamp"]) ?? 0,
            RestStore.Long(m["step"]) ?? 0));
        if (json["param"] is { } p) return new(seq, Param: new(Key(p), RestStore.Text(p["value"]) ?? ""));
        if (json["tag"] is { } t) return new(seq, Tag: new(Key(t), RestStore.Text(t["value"]) ?? ""));
        if (json["artifact"] is { } a)
            return new(seq, Artifact: new ArtifactUpload(RestStore.Text(a["local"]) ?? "", RestStore.Text(a["path"]), a["folder"]?.GetValue<bool>() ?? false));
        if (json["end"] is { } e)
            return new(seq, End: new RunEnd(MlflowTags.ParseStatus(RestStore.Text(e["status"]) ?? "FINISHED"), RestStore.Long(e["end_time"])));
        throw new InvalidDataException($"{where}: entry {seq} holds nothing known");
    }
}

/// <summary>A local file or folder to upload under an artifact path.</summary>
sealed record ArtifactUpload(string LocalPath, string? ArtifactPath, bool Folder);

/// <summary>How and when a run ended.</summary>
sealed record RunEnd(RunStatus Status, long? EndTime);
