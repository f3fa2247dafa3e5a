using System.Globalization;
using System.Text.Json.Nodes;

namespace Medformer.Heads;

/// <summary>Typed reads of a head's settings (head.json, or <c>--head KIND:key=value,…</c>), each error naming the head and the key.</summary>
static class HeadSettings
{
    public static int Integer(JsonObject settings, string kind, string key, int? fallback)
    {
        string? text = HeadRegistry.Text(settings, key);
        if (text is null) return fallback ?? throw new ArgumentException($"head '{kind}': '{key}' is missing");
        return int.TryParse(text, CultureInfo.InvariantCulture, out int value) ? value :
            throw new ArgumentException($"head '{kind}': {key} '{text}' is not an integer");
    }

    public static double Number(JsonObject settings, string kind, string key, double fallback)
    {
        string? text = HeadRegistry.Text(settings, key);
        if (text is null) return fallback;
        return double.TryParse(text, CultureInfo.InvariantCulture, out double value) ? value :
            throw new ArgumentException($"head '{kind}': {key} '{text}' is not a number");
    }

    public static double? OptionalNumber(JsonObject settings, string kind, string key) =>
        HeadRegistry.Text(settings, key) is null or "null" ? null : Number(settings, kind, key, 0);

    public static bool Flag(JsonObject settings, string kind, string key, bool fallback) => HeadRegistry.Text(settings, key) switch
    {
        null => fallback,
        "true" or "1" => true,
        "false" or "0" => false,
        var text => throw new ArgumentException($"head '{kind}': {key} '{text}' is not true or false"),
    };
}
