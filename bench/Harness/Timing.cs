using System.Diagnostics;

namespace Medformer.Bench;

/// <summary>Seconds per call: warm-up calls first, then the median of timed repeats.</summary>
public sealed record Timing(double Median, double Min, double Max, int Repeats)
{
    public static Timing Measure(Action body, int warmup = 3, int repeats = 10)
    {
        for (int i = 0; i < warmup; i++) body();
        var seconds = new double[repeats];
        for (int i = 0; i < repeats; i++)
        {
            long start = Stopwatch.GetTimestamp();
            body();
            seconds[i] = Stopwatch.GetElapsedTime(start).TotalSeconds;
        }
        Array.Sort(seconds);
        return new Timing(seconds[repeats / 2], seconds[0], seconds[^1], repeats);
    }
}
