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
    public static Precision Parse(string text) => text.Trim().ToLowerInvariant() switch
    {
        "fp32" or "float32" or "32" => Precision.Fp32,
        "bf16" or "bfloat16" or "bf16-mixed" => Precision.Bf16,
        "fp16" or "float16" or "16" or "16-mixed" => Precision.Fp16,
        _ => throw new ArgumentException($"--precision '{text}': expected fp32, bf16 or fp16."),
    };

    public static string Name(this Precision precision) => precision switch
    {
        Precision.Fp32 => "fp32",
        Precision.Bf16 => "bf16",
        _ => "fp16",
    };
}
