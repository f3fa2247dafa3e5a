using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Medformer.Pretrain;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using static TorchSharp.torch;

namespace Medformer.Bench;

/// <summary>
/// <c>bench/run distributed</c>: data parallel on this machine. (a) The Gloo all-reduce's bandwidth between two
/// processes over message sizes (float32 sum, in place), against torch.distributed's Gloo backend in Debian's PyTorch
/// 1.13 (reference/distributed.py) on the same sizes; (b) the pretraining job's default mix on Medformer small
/// through the real trainer: one process on every thread against two processes on an equal share each, at the same
/// per-process batch, and the fraction of a step the two spend in collectives. The ranks are this program run again
/// (<c>medformer-bench distributed-rank …</c>) with torchrun's variables.
/// </summary>
public static class DistributedBenchmark
{
    static readonly long[] Sizes = [4 << 10, 64 << 10, 1 << 20, 16 << 20, 64 << 20];
    const double SecondsPerSize = 0.5;
    const int Batch = 32, Warmup = 2, Timed = 6, World = 2;

    public static BenchReport Run(BenchOptions options)
    {
        int share = Math.Max(1, options.Threads / World);
        var reference = PythonReference.Run("distributed.py", "--sizes", string.Join(",", Sizes), "--seconds",
            SecondsPerSize.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--threads", share.ToString(), "--port", FreePort().ToString());
        var referenceRates = reference.GetProperty("gbps").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var ours = Ranks(World, share, "allreduce").GetProperty("gbps").EnumerateArray().Select(e => e.GetDouble()).ToArray();
        var one = Ranks(null, options.Threads, "train");
        var two = Ranks(World, share, "train");

        var report = new BenchReport("distributed");
        BenchRow? headline = null;
        for (int i = 0; i < Sizes.Length; i++)
        {
            var row = report.Add(new BenchRow($"all_reduce {Human(Sizes[i])}, 2 processes", ours[i], referenceRates[i], "GB/s"));
            if (Sizes[i] == 16 << 20) headline = row;
        }
        double oneRate = one.GetProperty("samples_per_s").GetDouble(), twoRate = two.GetProperty("samples_per_s").GetDouble();
        report.Add(new BenchRow($"small pretrain, 1 process x {options.Threads} threads, batch {Batch}", oneRate, null, "samples/s"));
        report.Add(new BenchRow($"small pretrain, 2 processes x {share} thread(s), batch {Batch} each", twoRate, null, "samples/s"));
        report.Add(new BenchRow("communication, fraction of a 2-process step", two.GetProperty("communication").GetDouble(), null, "of the step",
            HigherIsBetter: false));
        report.Headline(headline!);
        report.Extra("two_over_one_process", Math.Round(twoRate / oneRate, 2));
        report.Extra("gradient_mib", Math.Round(two.GetProperty("parameters").GetDouble() * 4 / (1 << 20), 1));
        report.Extra("bandwidth",
            "bytes of the float32 tensor over seconds per all-reduce (algorithm bandwidth); as many repeats as fit in 0.5 s per size " +
                "after 3 warm-ups; ranks on 127.0.0.1");
        report.Extra("training",
            $"the pretraining job's default mix, bf16 policy, {Timed} steps timed after {Warmup} between the trainer's log callbacks, batches made before " +
                "timing; communication: time in collectives (gradient all-reduce in 25 MB buckets, the loss agreement, SimCLR's all-gather forward and " +
                    "backward) over the step's wall time, on rank 0, mean of the timed steps");
        report.Extra("overlap",
            "none: TorchSharp 0.107 has no tensor gradient hooks, so the buckets are reduced after the backward pass (DDP overlaps them with it)");
        return report;
    }

    /// <summary>One of the ranks (or the single process): the benchmark's <paramref name="args"/>, rank 0 prints one JSON line.</summary>
    public static int Rank(string[] args)
    {
        TorchRuntime.EnsureLoaded();
        TorchRuntime.SetThreads(int.Parse(args[1]));
        using var group = ProcessGroup.FromEnvironment();
        var result = args[0] switch
        {
            "allreduce" => AllReduce(group ?? throw new InvalidOperationException("allreduce needs two ranks")),
            "train" => Train(group),
            _ => throw new ArgumentException($"unknown rank scenario {args[0]}"),
        };
        if (group is null or { Rank: 0 }) Console.WriteLine(JsonSerializer.Serialize(result));
        return 0;
    }

    static Dictionary<string, object> AllReduce(ProcessGroup group)
    {
        var rates = new List<double>();
        foreach (long size in Sizes)
        {
            using var x = ones(size / 4);
            for (int i = 0; i < 3; i++) group.AllReduce(x);
            // As many repeats as fit in the time per size, on rank 0's estimate, so every rank runs the same count.
            long start = Stopwatch.GetTimestamp();
            group.AllReduce(x);
            using var estimate = tensor(new[] { Stopwatch.GetElapsedTime(start).TotalSeconds });
            group.Broadcast(estimate);
            int repeats = (int)Math.Clamp(SecondsPerSize / Math.Max(estimate.item<double>(), 1e-6), 3, 1000);
            group.Barrier();
            start = Stopwatch.GetTimestamp();
            for (int i = 0; i < repeats; i++) group.AllReduce(x);
            rates.Add(size / (Stopwatch.GetElapsedTime(start).TotalSeconds / repeats) / 1e9);
        }
        return new() { ["gbps"] = rates };
    }

    static Dictionary<string, object> Train(ProcessGroup? group)
    {
        var config = MedformerConfig.Small;
        var job = new RunConfig();
        Seeding.SeedEverything(job.Seed);
        var batches = PretrainBenchmark.MakeBatches(config, job, Batch);
        string output = Directory.CreateTempSubdirectory("medformer-bench-distributed-").FullName;
        try
        {
            using var task = new Pretraining(new MedformerModel(config), PretrainJob.Objectives(job, config), job.Momentum);
            var options = PretrainJob.TrainerOptions(job) with { MaxSteps = Warmup + Timed, LogEvery = 1, CheckpointEvery = 0 };
            var stamps = new long[Warmup + Timed + 1];
            var communication = new List<double>();
            new Trainer(options, CPU, group: group).Fit(task, start => PretrainBenchmark.Replay(batches, start), output, log: log =>
            {
                stamps[log.Step] = Stopwatch.GetTimestamp();
                if (log.Step > Warmup && log.Communication is { } c) communication.Add(c);
            });
            double seconds = Stopwatch.GetElapsedTime(stamps[Warmup], stamps[^1]).TotalSeconds / Timed;
            int world = group?.WorldSize ?? 1;
            return new()
            {
                ["samples_per_s"] = Batch * world / seconds,
                ["step_s"] = seconds,
                ["communication"] = communication.Count > 0 ? communication.Average() : 0.0,
                ["parameters"] = task.Module.parameters().Sum(p => p.numel()),
            };
        }
        finally
        {
            foreach (var batch in batches) batch.Dispose();
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>Runs this program as <paramref name="world"/> ranks (null: one process without the variables) and returns rank 0's JSON.</summary>
    static JsonElement Ranks(int? world, int threads, string scenario)
    {
        int port = FreePort();
        var processes = Enumerable.Range(0, world ?? 1).Select(rank =>
        {
            var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (string arg in new[] { "distributed-rank", scenario, threads.ToString() }) start.ArgumentList.Add(arg);
            if (world is { } w)
            {
                start.Environment["RANK"] = start.Environment["LOCAL_RANK"] = rank.ToString();
                start.Environment["WORLD_SIZE"] = start.Environment["LOCAL_WORLD_SIZE"] = w.ToString();
                start.Environment["MASTER_ADDR"] = "127.0.0.1";
                start.Environment["MASTER_PORT"] = port.ToString();
            }
            var process = Process.Start(start) ?? throw new InvalidOperationException("cannot start a rank");
            return (Process: process, Stdout: process.StandardOutput.ReadToEndAsync(), Stderr: process.StandardError.ReadToEndAsync());
        }).ToList();
        foreach (var (process, _, stderr) in processes)
        {
            process.WaitForExit();
            if (process.ExitCode != 0) throw new InvalidOperationException($"a {scenario} rank failed (exit {process.ExitCode}): {stderr.Result.Trim()}");
        }
        string last = processes[0].Stdout.Result.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        return JsonDocument.Parse(last).RootElement.Clone();
    }

    static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    static string Human(long bytes) => bytes >= 1 << 20 ? $"{bytes >> 20} MB" : $"{bytes >> 10} KB";
}
