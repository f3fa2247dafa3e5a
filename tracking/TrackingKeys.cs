using System.Text.RegularExpressions;

namespace Medformer.Tracking;

/// <summary>
/// MLflow's rules for metric, param and tag keys and values (mlflow.utils.validation): a key matches
/// <c>^[/\w.\- ]*$</c>, has at most 250 characters and reads the same after path normalisation (no <c>..</c>, no
/// leading or doubled <c>/</c>), because the file store makes it a file path.
/// </summary>
public static partial class TrackingKeys
{
    public const int MaxKeyLength = 250;
    public const int MaxParamValueLength = 6000;
    public const int MaxTagValueLength = 8000;

    // \z, not $: both .NET's and Python's $ also match before a final newline, which would make "key\n" a key.
    [GeneratedRegex(@"^[/\w.\- ]*\z")]
    private static partial Regex ValidKey();

    /// <summary>Throws an <see cref="ArgumentException"/> naming the key and the rule it breaks.</summary>
    public static void Validate(string key, string kind)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (key.Length == 0) throw new ArgumentException($"{kind} key is empty");
        if (key.Length > MaxKeyLength) throw new ArgumentException($"{kind} key '{key[..40]}…' has {key.Length} characters; MLflow allows {MaxKeyLength}");
        if (!ValidKey().IsMatch(key))
            throw new ArgumentException($"{kind} key '{key}': MLflow allows only letters, digits, underscores, dashes, periods, spaces and slashes");
        string normalized = NormalizePath(key);
        if (normalized != key || normalized == "." || normalized.StartsWith("..", StringComparison.Ordinal) || normalized.StartsWith('/'))
            throw new ArgumentException($"{kind} key '{key}' would resolve to the path '{normalized}'; MLflow refuses keys that start with '..' or '/', or " +
                "hold '.', '..', or a trailing or doubled '/'");
    }

    public static void ValidateValue(string key, string value, string kind)
    {
        int max = kind == "param" ? MaxParamValueLength : MaxTagValueLength;
        if (value.Length > max) throw new ArgumentException($"{kind} '{key}': its value has {value.Length} characters; MLflow allows {max}");
    }

    /// <summary>Every key and value of a log_batch, checked before a store writes any of it (MLflow's own order).</summary>
    public static void ValidateBatch(IReadOnlyList<Metric> metrics, IReadOnlyDictionary<string, string> parameters,
        IReadOnlyDictionary<string, string> tags)
    {
        foreach (var m in metrics) Validate(m.Key, "metric");
        foreach (var (key, value) in parameters)
        {
            Validate(key, "param");
            ValidateValue(key, value, "param");
        }
        foreach (var (key, value) in tags)
        {
            Validate(key, "tag");
            ValidateValue(key, value, "tag");
        }
    }

    /// <summary>Python's posixpath.normpath, for the keys the regex lets through.</summary>
    static string NormalizePath(string path)
    {
        bool rooted = path.StartsWith('/');
        var parts = new List<string>();
        foreach (string part in path.Split('/'))
        {
            if (part is "" or ".") continue;
            if (part == ".." && parts.Count > 0 && parts[^1] != "..") parts.RemoveAt(parts.Count - 1);
            else if (part != ".." || !rooted) parts.Add(part);
        }
        string joined = string.Join('/', parts);
        return rooted ? "/" + joined : joined.Length == 0 ? "." : joined;
    }
}
