namespace Medformer.Bench;

/// <summary>This process's resident memory, from /proc/self/status.</summary>
public static class Resident
{
    public static double CurrentMiB => Read("VmRSS:");
    public static double PeakMiB => Read("VmHWM:");

    static double Read(string field)
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith(field, StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) / 1024.0;
        return double.NaN;
    }
}
