namespace Medformer.Runtime;

/// <summary><c>--precision fp32|bf16|fp16</c>.</summary>
public enum Precision
{
    Fp32,
    Bf16,
    Fp16,
}

public static class PrecisionNames
{
    /// <summary>
    /// The one parser of precision names, for flags and run configs alike: fp32, bf16, fp16, and the spellings
    /// PyTorch and Lightning users bring (float32, bfloat16, bf16-mixed, 16-mixed, 32, 16).
    /// </summary>
    /// <param name="where">What the error names: the flag, or the config and key.</param>
    public static Precision Parse(string text, string where = "--precision") => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "32" or "32-true" => Precision.Fp32,
        "bf16" or "bfloat16" or "bf16-mixed" => Precision.Bf16,
        "fp16" or "float16" or "16" or "16-mixed" => Precision.Fp16,
        _ => throw new ArgumentException($"{where} '{text}' must be fp32, bf16 or fp16"),
    };

    public static string Name(this Precision precision) => precision switch
    {
        Precision.Fp32 => "fp32",
        Precision.Bf16 => "bf16",
        _ => "fp16",
    };
}
