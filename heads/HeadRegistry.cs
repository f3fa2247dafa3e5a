using System.Collections.Concurrent;
using System.Text.Json.Nodes;

namespace Medformer.Heads;

/// <summary>
/// Head kinds by name, so a saved head (head.json: kind, task, settings) and <c>--head KIND:key=value,…</c> rebuild
/// it. Built in: "classification", "segmentation", "restoration", "super-resolution" and "translation". A custom
/// head registers its own factory.
/// </summary>
public static class HeadRegistry
{
    /// <summary>Builds a head for a model config, its task bank and its settings (values may be JSON numbers or strings).</summary>
    public delegate Head Factory(MedformerConfig config, string task, JsonObject settings);

    static readonly ConcurrentDictionary<string, Factory> factories = new()
    {
        [ClassificationHead.KindName] = ClassificationHead.FromSettings,
        [SegmentationHead.KindName] = SegmentationHead.FromSettings,
        [ImageToImageHead.Restoration] = ImageToImageHead.FromSettings(ImageToImageHead.Restoration),
        [ImageToImageHead.SuperResolution] = ImageToImageHead.FromSettings(ImageToImageHead.SuperResolution),
        [ImageToImageHead.Translation] = ImageToImageHead.FromSettings(ImageToImageHead.Translation),
    };

    public static IEnumerable<string> Kinds => factories.Keys.Order();

    public static void Register(string kind, Factory factory) => factories[kind] = factory;

    public static Head Create(string kind, MedformerConfig config, string task, JsonObject settings) =>
        factories.TryGetValue(kind, out var factory)
            ? factory(config, task, settings)
            : throw new ArgumentException($"head '{kind}': the head kinds are {string.Join(", ", Kinds)} (register a custom one with HeadRegistry.Register)");

    /// <summary>
    /// <c>KIND[:key=value,…]</c> (the CLI's --head) → the kind, the task bank (the key "task", else null) and the
    /// head's settings as strings (the factories read numbers from strings too).
    /// </summary>
    public static (string Kind, string? Bank, JsonObject Settings) ParseSpec(string text, string option = "--head")
    {
        var parts = text.Split(':', 2);
        var settings = new JsonObject();
        string? bank = null;
        if (parts[0].Length == 0) throw new ArgumentException($"{option} '{text}': expected KIND[:key=value,…] with KIND one of {string.Join(", ", Kinds)}");
        if (parts.Length == 2)
            foreach (var pair in parts[1].Split(',', StringSplitOptions.RemoveEmptyEntries))
            {
                var kv = pair.Split('=', 2);
                if (kv.Length != 2 || kv[0].Length == 0) throw new ArgumentException($"{option} '{text}': '{pair}' is not key=value");
                if (kv[0] == "task") bank = kv[1];
                else settings[kv[0]] = kv[1];
            }
        return (parts[0], bank, settings);
    }

    /// <summary>The task bank a kind reads by default: its own name; the image-to-image kinds share "image_to_image".</summary>
    public static string DefaultTask(string kind) => kind is ImageToImageHead.Restoration or ImageToImageHead.SuperResolution or ImageToImageHead.Translation
        ? "image_to_image"
        : kind;

    /// <summary>A setting as text (a JSON string or number), or null when absent.</summary>
    public static string? Text(JsonObject settings, string key) => settings[key] switch
    {
        null => null,
        JsonValue value when value.TryGetValue(out string? text) => text,
        var node => node.ToJsonString(),
    };

    /// <summary>Fails on a setting the head does not know, naming it and the known ones.</summary>
    public static void RequireKnown(JsonObject settings, string kind, params string[] known)
    {
        var unknown = settings.Select(p => p.Key).FirstOrDefault(k => !known.Contains(k));
        if (unknown is not null) throw new ArgumentException($"head '{kind}': unknown setting '{unknown}'; it takes {string.Join(", ", known)}");
    }
}
