using System.Globalization;
using System.Text.Json.Nodes;

namespace Medformer.Tracking;

/// <summary>A nested config (JSON) as flat MLflow params, as Lightning's logger flattens hyperparameters: <c>optimizer.lr</c>,
/// <c>corpora.0.phantom</c>.</summary>
public static class RunParams
{
    /// <summary>Objects and lists of objects become dotted keys; lists of values one value as Python prints a list; nulls are left out.</summary>
    public static Dictionary<string, string> Flatten(JsonNode? node, string prefix = "")
    {
        var result = new Dictionary<string, string>(StringComparer.Ordinal);
        Add(node, prefix, result);
        return result;
    }

    static void Add(JsonNode? node, string key, Dictionary<string, string> result)
    {
        switch (node)
        {
            case null:
                return;
            case JsonObject obj:
                foreach (var (name, child) in obj) Add(child, key.Length == 0 ? name : $"{key}.{name}", result);
                return;
            case JsonArray array when array.Any(item => item is JsonObject or JsonArray):
                for (int i = 0; i < array.Count; i++) Add(array[i], $"{key}.{i}", result);
                return;
            case JsonArray array:
                result[key] = "[" + string.Join(", ", array.Select(Value)) + "]";
                return;
            default:
                result[key] = Value(node);
                return;
        }
    }

    static string Value(JsonNode? node) => node switch
    {
        null => "None",
        JsonValue v when v.TryGetValue<string>(out string? s) => s,
        JsonValue v when v.TryGetValue<bool>(out bool b) => b ? "True" : "False",
        JsonValue v when v.TryGetValue<long>(out long n) => n.ToString(CultureInfo.InvariantCulture),
        JsonValue v when v.TryGetValue<double>(out double d) => PythonFloat.Format(d),
        _ => node.ToJsonString(),
    };
}
