using Medformer.Runtime;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run NAME [--threads N]</c>: runs one benchmark against the PyTorch reference in the same run, prints a
/// table and, last, one JSON line. A benchmark is a function from options to a report, registered here.
/// </summary>
public static class BenchmarkRunner
{
    static readonly Dictionary<string, (string Description, Func<BenchOptions, BenchReport> Run)> Benchmarks = new(StringComparer.Ordinal)
    {
        ["runtime"] = ("GEMM rates, per-op overhead, and a transformer block's training step (fp32, bf16)", RuntimeBenchmark.Run),
        ["model"] = ("Medformer small: training-step throughput (fp32, bf16), model-FLOP utilisation, memory", ModelBenchmark.Run),
        ["pretrain"] = ("the pretraining job's default mix (inpainting, SimCLR) on Medformer small: trainer throughput (bf16, fp32), MFU, memory",
            PretrainBenchmark.Run),
        ["dba"] = ("Dynamic Batch Adaptation on 1% of Fashion-MNIST vs plain training on 1% and 100% (test accuracy; an experiment, no PyTorch reference)",
            DbaExperiment.Run),
        ["pays"] = ("does pretraining pay? any data (MEDFORMER_PAYS_DATA; Fashion-MNIST), 1% and 10% of the labels: linear model on pixels, a small CNN, " +
            "Medformer from scratch and pretrained (probe, fine-tuned, ± FixMatch); a Markdown table; an experiment", PaysExperiment.Run),
        ["objectives"]
            = ("issue 13's table on the phantom: linear probe and fine-tuning at 1% and 10% of the labels after each objective and the mix vs random init; " +
                "an experiment", ObjectivesExperiment.Run),
        ["brainfuse"] = ("issue 31's table: top-1/3/5 after fine-tuning with few labels, normal, + Barlow Twins, + BrainFuse (smooth, raw) " +
            "with and without consistency, on the 3D phantom and Fashion-MNIST; an experiment", BrainFuseExperiment.Run),
        ["distributed"]
            = ("data parallel: Gloo all-reduce bandwidth between 2 processes vs torch.distributed's gloo; small's pretraining on 2 processes vs 1; " +
                "communication's share of a step", DistributedBenchmark.Run),
        ["heads"] = ("sliding-window segmentation of a 128^3 volume (Medformer tiny, 32^3 windows) vs a PyTorch twin of MONAI's sliding_window_inference; " +
            "full fine-tuning of a classification head (28x28) and a 3D segmentation head (32^3 crops) vs PyTorch twins", HeadsBenchmark.Run),
        ["soak"] = ("the default pretraining job on tiny for --minutes N (default 9) under forced garbage collection: steps, faults (must be 0), RSS each " +
            "minute (growth from minute 2 under 1%), a PNG of RSS over time (--plot FILE)", SoakBenchmark.Run),
        ["data"] = ("load + two-view augmentation of 28x28 images, 96^3 crops from the CT cache, vs torch's DataLoader", DataBenchmark.Run),
    };

    public static int Run(string[] args)
    {
        if (args.Length > 0 && args[0] == "distributed-rank") return DistributedBenchmark.Rank(args[1..]);  // a rank of bench/run distributed
        if (args.Length == 0 || args[0] is "-h" or "--help" || !Benchmarks.TryGetValue(args[0], out var benchmark))
        {
            Console.Error.WriteLine("usage: bench/run NAME [--threads N] [--minutes N] [--plot FILE]");
            foreach (var (name, (description, _)) in Benchmarks) Console.Error.WriteLine($"  {name,-10} {description}");
            return args.Length == 0 || args[0] is "-h" or "--help" ? 0 : 2;
        }
        BenchOptions options;
        try
        {
            options = BenchOptions.Parse(args[1..]);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("bench/run: " + e.Message);
            return 2;
        }
        TorchRuntime.EnsureLoaded();
        TorchRuntime.SetThreads(options.Threads);
        Console.WriteLine($"{args[0]}: {CpuFeatures.ModelName}, {options.Threads} thread(s), TorchSharp 0.107.0 (libtorch 2.10) vs Debian PyTorch 1.13");
        BenchReport report;
        try
        {
            report = benchmark.Run(options);
        }
        catch (ArgumentException e)  // a setting the benchmark refuses (an option or a MEDFORMER_* variable): one line
        {
            Console.Error.WriteLine("bench/run " + args[0] + ": " + e.Message);
            if (Environment.GetEnvironmentVariable("MEDFORMER_DEBUG") == "1") Console.Error.WriteLine(e);
            return 2;
        }
        report.Extra("threads", options.Threads);
        report.Extra("cpu", CpuFeatures.ModelName);
        report.Print(Console.Out);
        return 0;
    }
}

/// <param name="Minutes">How long a timed benchmark runs (soak).</param>
/// <param name="Plot">Where a benchmark that draws writes its PNG (null: its default).</param>
public sealed record BenchOptions(int Threads, double Minutes = 9, string? Plot = null)
{
    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions(Environment.ProcessorCount);
        for (int i = 0; i < args.Length; i++)
        {
            string? value = i + 1 < args.Length ? args[i + 1] : null;
            if (args[i] == "--threads" && int.TryParse(value, out int threads) && threads > 0) options = options with { Threads = threads };
            else if (args[i] == "--minutes" && double.TryParse(value, System.Globalization.CultureInfo.InvariantCulture, out double minutes) && minutes > 0)
                options = options with { Minutes = minutes };
            else if (args[i] == "--plot" && value is { Length: > 0 } && value.EndsWith(".png",
                StringComparison.OrdinalIgnoreCase)) options = options with { Plot = value };
            else throw new ArgumentException($"unknown or malformed option '{args[i]}' (expected --threads N, --minutes N or --plot FILE.png)");
            i++;
        }
        return options;
    }
}
