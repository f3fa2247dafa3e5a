using System.Globalization;

namespace Medformer.Tracking;

/// <summary>
/// Floats as Python writes and reads them: MLflow's file store writes a metric value with <c>str(float)</c> (shortest
/// round-trip digits; <c>nan</c>, <c>inf</c>, <c>-inf</c>; exponent form below 1e-4 and from 1e16) and reads it with
/// <c>float()</c>.
/// </summary>
public static class PythonFloat
{
    public static string Format(double value)
    {
        if (double.IsNaN(value)) return "nan";
        if (double.IsPositiveInfinity(value)) return "inf";
        if (double.IsNegativeInfinity(value)) return "-inf";
        string sign = double.IsNegative(value) ? "-" : "";
        // .NET's "R" gives the same shortest round-trip digits as Python's repr; only the layout differs.
        string text = Math.Abs(value).ToString("R", CultureInfo.InvariantCulture);
        int e = text.IndexOf('E');
        int exponent = e < 0 ? 0 : int.Parse(text[(e + 1)..], CultureInfo.InvariantCulture);
        string mantissa = e < 0 ? text : text[..e];
        int dot = mantissa.IndexOf('.');
        string digits = dot < 0 ? mantissa : mantissa.Remove(dot, 1);
        int point = (dot < 0 ? mantissa.Length : dot) + exponent;  // value = 0.digits × 10^point
        int lead = 0;
        while (lead < digits.Length && digits[lead] == '0') lead++;
        digits = digits[lead..].TrimEnd('0');
        point -= lead;
        if (digits.Length == 0) return sign + "0.0";
        int x = point - 1;
        if (x is >= -4 and < 16)
        {
            if (point <= 0) return $"{sign}0.{new string('0', -point)}{digits}";
            if (point >= digits.Length) return $"{sign}{digits}{new string('0', point - digits.Length)}.0";
            return $"{sign}{digits[..point]}.{digits[point..]}";
        }
        string fraction = digits.Length > 1 ? "." + digits[1..] : "";
        return $"{sign}{digits[0]}{fraction}e{(x < 0 ? '-' : '+')}{Math.Abs(x):00}";
    }

    /// <summary>Python's <c>float(text)</c> for what MLflow stores: decimals, exponents, nan and inf in any case.</summary>
    public static bool TryParse(string text, out double value)
    {
        string t = text.Trim().Replace("_", "", StringComparison.Ordinal);
        string body = t.TrimStart('+', '-');
        bool negative = t.StartsWith('-');
        if (body.Equals("nan", StringComparison.OrdinalIgnoreCase))
        {
            value = double.NaN;
            return t.Length - body.Length <= 1;
        }
        if (body.Equals("inf", StringComparison.OrdinalIgnoreCase) || body.Equals("infinity", StringComparison.OrdinalIgnoreCase))
        {
            value = negative ? double.NegativeInfinity : double.PositiveInfinity;
            return t.Length - body.Length <= 1;
        }
        return double.TryParse(t, NumberStyles.Float, CultureInfo.InvariantCulture, out value);
    }
}
