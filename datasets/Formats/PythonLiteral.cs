using System.Globalization;
using System.Text;

namespace Medformer.Datasets.Formats;

/// <summary>
/// The few Python literals a .npy header holds: a dict of str keys whose values are str, bool, int or tuples of
/// int. Strict: anything else is an error naming the source.
/// </summary>
static class PythonLiteral
{
    public static Dictionary<string, object> ParseDict(string text, string source)
    {
        int position = 0;
        var value = ParseValue(text, ref position, source, depth: 0);
        SkipSpace(text, ref position);
        if (position != text.Length) throw Fail(source, text, position, "unexpected text after the header dict");
        if (value is not Dictionary<string, object> dict) throw Fail(source, text, 0, "the header is not a dict");
        return dict;
    }

    static object ParseValue(string text, ref int p, string source, int depth)
    {
        if (depth > 8) throw Fail(source, text, p, "nesting too deep");
        SkipSpace(text, ref p);
        if (p >= text.Length) throw Fail(source, text, p, "unexpected end");
        char c = text[p];
        if (c == '{')
        {
            p++;
            var dict = new Dictionary<string, object>(StringComparer.Ordinal);
            while (true)
            {
                SkipSpace(text, ref p);
                if (p < text.Length && text[p] == '}') { p++; return dict; }
                if (ParseValue(text, ref p, source, depth + 1) is not string key) throw Fail(source, text, p, "a dict key is not a string");
                SkipSpace(text, ref p);
                Expect(text, ref p, ':', source);
                var value = ParseValue(text, ref p, source, depth + 1);
                if (!dict.TryAdd(key, value)) throw Fail(source, text, p, $"duplicate key '{key}'");
                SkipSpace(text, ref p);
                if (p < text.Length && text[p] == ',') { p++; continue; }
                Expect(text, ref p, '}', source);
                return dict;
            }
        }
        if (c == '(')
        {
            p++;
            var items = new List<object>();
            while (true)
            {
                SkipSpace(text, ref p);
                if (p < text.Length && text[p] == ')') { p++; return items; }
                items.Add(ParseValue(text, ref p, source, depth + 1));
                SkipSpace(text, ref p);
                if (p < text.Length && text[p] == ',') { p++; continue; }
                Expect(text, ref p, ')', source);
                return items;
            }
        }
        if (c is '\'' or '"')
        {
            int end = text.IndexOf(c, p + 1);
            if (end < 0) throw Fail(source, text, p, "unterminated string");
            string s = text[(p + 1)..end];
            if (s.Contains('\\')) throw Fail(source, text, p, "escapes in strings are not supported");
            p = end + 1;
            return s;
        }
        if (Word(text, ref p, "True")) return true;
        if (Word(text, ref p, "False")) return false;
        int start = p;
        if (p < text.Length && text[p] is '-' or '+') p++;
        while (p < text.Length && char.IsAsciiDigit(text[p])) p++;
        if (p < text.Length && text[p] == 'L') p++;  // Python 2 longs in old files
        string digits = text[start..p].TrimEnd('L');
        if (digits.Length == 0 || !long.TryParse(digits, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long number))
            throw Fail(source, text, start, "expected a string, True, False, an integer, a tuple or a dict");
        return number;
    }

    static bool Word(string text, ref int p, string word)
    {
        if (string.CompareOrdinal(text, p, word, 0, word.Length) != 0) return false;
        p += word.Length;
        return true;
    }

    static void Expect(string text, ref int p, char c, string source)
    {
        if (p >= text.Length || text[p] != c) throw Fail(source, text, p, $"expected '{c}'");
        p++;
    }

    static void SkipSpace(string text, ref int p)
    {
        while (p < text.Length && text[p] is ' ' or '\t' or '\n' or '\r') p++;
    }

    static InvalidDataException Fail(string source, string text, int position, string what)
    {
        string near = text.Length == 0 ? "" : $" near «{Shorten(text, position)}»";
        return new InvalidDataException($"{source}: malformed .npy header: {what} at character {position}{near}");
    }

    static string Shorten(string text, int position)
    {
        int start = Math.Clamp(position - 10, 0, text.Length);
        var sb = new StringBuilder(text.Substring(start, Math.Min(30, text.Length - start)));
        return sb.ToString();
    }
}
