namespace Medformer.Runtime;

/// <summary>What the CPU offers for reduced precision, read from /proc/cpuinfo (Linux).</summary>
public static class CpuFeatures
{
    static readonly Lazy<HashSet<string>> Flags = new(ReadFlags);

    public static bool Avx512Bf16 => Flags.Value.Contains("avx512_bf16");
    public static bool AmxBf16 => Flags.Value.Contains("amx_bf16");

    /// <summary>
    /// True where bf16 matmuls run in hardware (AVX512-BF16 or AMX), so bf16 beats fp32. MEDFORMER_FAST_BF16=0 says
    /// no even then (a VM whose /proc/cpuinfo shows flags its host does not run fast); nothing can say yes where the
    /// CPU lacks them, so bf16 is never forced.
    /// </summary>
    public static bool HasFastBf16 => (Avx512Bf16 || AmxBf16) && Environment.GetEnvironmentVariable("MEDFORMER_FAST_BF16") != "0";

    public static string ModelName { get; } = ReadField("model name") ?? "unknown CPU";

    static HashSet<string> ReadFlags()
    {
        string? flags = ReadField("flags");
        return flags == null ? [] : [.. flags.Split(' ', StringSplitOptions.RemoveEmptyEntries)];
    }

    static string? ReadField(string name)
    {
        try
        {
            foreach (string line in File.ReadLines("/proc/cpuinfo"))
            {
                int colon = line.IndexOf(':');
                if (colon > 0 && line[..colon].Trim() == name) return line[(colon + 1)..].Trim();
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}
