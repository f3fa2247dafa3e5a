using Medformer.Runtime;

namespace Medformer.Bench;

/// <summary>Dispatches <c>bench/run NAME</c> to one benchmark.</summary>
public static class BenchmarkRunner
{
    static readonly Dictionary<string, Func<string[], int>> Benchmarks = new(StringComparer.Ordinal)
    {
    };

    public static int Run(string[] args)
    {
        if (args.Length == 0 || !Benchmarks.TryGetValue(args[0], out var benchmark))
        {
            Console.Error.WriteLine("usage: bench/run NAME [options]; NAME is one of: " + string.Join(", ", Benchmarks.Keys.Order()));
            return 2;
        }
        TorchRuntime.EnsureLoaded();
        return benchmark(args[1..]);
    }
}
