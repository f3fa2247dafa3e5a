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
