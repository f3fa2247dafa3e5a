using System.Globalization;

namespace Medformer.Cli;

/// <summary>
/// The <c>key=value,…</c> settings of an option such as --dba or --self-train, read with errors that name the option,
/// its whole value and the keys it knows.
/// </summary>
sealed class KeyValues(string option, string text, string keys)
{
    public IEnumerable<(string Key, string Value)> Pairs(string settings)
    {
        foreach (var pair in settings.Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            var kv = pair.Split('=', 2);
            if (kv.Length != 2 || kv[0].Length == 0) throw Error($"'{pair}' is not key=value ({keys})");
            yield return (kv[0], kv[1]);
        }
    }

    public int Integer(string key, string value) => int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int n) ? n
        : throw Error($"{key} '{value}' is not an integer");

    public double Number(string key, string value) => double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double x) ? x
        : throw Error($"{key} '{value}' is not a number");

    public ArgumentException Unknown(string key) => Error($"unknown key '{key}' (expected {keys})");

    public ArgumentException Error(string message) => new($"{option} '{text}': {message}");
}
