using System.Globalization;
using System.Text;
using Medformer.Runtime;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Medformer.Tracking;

/// <summary>
/// The flat <c>meta.yaml</c> files of MLflow's file store: written as PyYAML's <c>safe_dump</c> writes them (block
/// style, keys sorted), atomically (a hidden sibling, flushed to disk, renamed over); read with the rules of a YAML
/// 1.1 reader (plain <c>null</c>/<c>~</c>/empty is null).
/// </summary>
public static class MetaYaml
{
    /// <summary>Writes <paramref name="fields"/>: a value is a string, a long, null, or an empty list.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, object?> fields)
    {
        var text = new StringBuilder();
        foreach (var (key, value) in fields.OrderBy(f => f.Key, StringComparer.Ordinal))
            text.Append(key).Append(": ").Append(value switch
            {
                null => "null",
                long n => n.ToString(CultureInfo.InvariantCulture),
                int n => n.ToString(CultureInfo.InvariantCulture),
                string s => Scalar(s),
                Array { Length: 0 } => "[]",
                _ => throw new ArgumentException($"meta.yaml field '{key}': cannot write a {value.GetType().Name}"),
            }).Append('\n');
        AtomicFile.WriteAllText(path, text.ToString());
    }

    /// <summary>The fields of a flat meta.yaml: scalars as text (null for YAML's null), sequences as null.</summary>
    public static Dictionary<string, string?> Read(string path)
    {
        var stream = new YamlStream();
        try
        {
            using var reader = new StreamReader(path, Encoding.UTF8);
            stream.Load(reader);
        }
        catch (YamlException e)
        {
            throw new InvalidDataException($"{path}: not valid YAML ({e.Message})", e);
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new InvalidDataException($"{path}: not a YAML mapping");
        var fields = new Dictionary<string, string?>(StringComparer.Ordinal);
        foreach (var (key, node) in root.Children)
            fields[((YamlScalarNode)key).Value ?? ""] = node is YamlScalarNode scalar && !IsNull(scalar) ? scalar.Value : null;
        return fields;
    }

    static bool IsNull(YamlScalarNode node) =>
        node.Style == ScalarStyle.Plain && (node.Value is null or "" or "~" or "null" or "Null" or "NULL");

    /// <summary>A string as a YAML scalar that every YAML 1.1 reader takes for that same string.</summary>
    static string Scalar(string s)
    {
        if (s.Any(char.IsControl))
        {
            var quoted = new StringBuilder("\"");
            foreach (char c in s)
                quoted.Append(c switch
                {
                    '"' => "\\\"",
                    '\\' => "\\\\",
                    '\n' => "\\n",
                    '\t' => "\\t",
                    '\r' => "\\r",
                    _ when char.IsControl(c) => $"\\x{(int)c:x2}",
                    _ => c.ToString(),
                });
            return quoted.Append('"').ToString();
        }
        return PlainIsSafe(s) ? s : "'" + s.Replace("'", "''", StringComparison.Ordinal) + "'";
    }

    // Plain only for text with no YAML meaning: it starts with a letter, digit, '/' or '_', has no ': ', ' #' or
    // flow characters, does not end in a space or ':', and does not read as a number, bool or null.
    static bool PlainIsSafe(string s)
    {
        if (s.Length == 0 || !(char.IsLetterOrDigit(s[0]) || s[0] is '/' or '_')) return false;
        if (s.EndsWith(' ') || s.EndsWith(':') || s.Contains(": ", StringComparison.Ordinal) || s.Contains(" #", StringComparison.Ordinal)) return false;
        if (s.IndexOfAny(['{', '}', '[', ']', ',', '\'', '"', '`', '|', '>', '!', '%', '@', '&', '*']) >= 0) return false;
        string lower = s.ToLowerInvariant();
        if (lower is "y" or "n" or "yes" or "no" or "on" or "off" or "true" or "false" or "null" or "~") return false;
        if (s.All(c => char.IsDigit(c) || c is '.' or '_' or '+' or '-' or 'e' or 'E' or ':' or 'x' or 'X' or 'o' or 'b' || char.IsAsciiHexDigit(c))
            && s.Any(char.IsDigit)) return false;  // could be an int, float, hex, octal, base-60 or date
        return true;
    }
}
