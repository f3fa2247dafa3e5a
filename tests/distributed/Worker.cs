using System.Diagnostics;
using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Pretrain;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using static TorchSharp.torch;

namespace Medformer.Tests.Distributed;

/// <summary>
/// The ranks of the distributed tests: the test assembly run as a program (<c>dotnet exec Medformer.Tests.dll
/// worker SCENARIO …</c>) with torchrun's variables set by the test. Each scenario checks what a rank can check
/// itself, prints "ok NAME" lines, and exits 0; a failed check exits 1 with the reason on stderr.
/// </summary>
static class Worker
{
    public static int Main(string[] args)
    {
        if (args.Length < 2 || args[0] != "worker")
        {
            Console.Error.WriteLine("usage: dotnet exec Medformer.Tests.dll worker collectives|die RANK|train OUT STEPS|stranger HOST PORT");
            return 2;
        }
        TorchRuntime.EnsureLoaded();
        try
        {
            switch (args[1])
            {
                case "collectives": Collectives(); break;
                case "die": Die(int.Parse(args[2])); break;
                case "train": Train(args[2], long.Parse(args[3])); break;
                case "stranger": Stranger(args[2], int.Parse(args[3])); break;
                default: throw new ArgumentException($"unknown scenario {args[1]}");
            }
            return 0;
        }
        catch (Exception e)
        {
            Console.Error.WriteLine($"{e.GetType().Name}: {e.Message}");
            return 1;
        }
    }

    static void Check(bool ok, string what)
    {
        if (!ok) throw new InvalidOperationException("check failed: " + what);
        Console.WriteLine("ok " + what);
    }

    static bool Close(Tensor a, Tensor b, double tolerance = 1e-6) =>
        a.shape.SequenceEqual(b.shape) && a.to(ScalarType.Float64).sub(b.to(ScalarType.Float64)).abs().max().item<double>() <= tolerance;

    static void Collectives()
    {
        using var group = ProcessGroup.FromEnvironment() ?? throw new InvalidOperationException("no RANK/WORLD_SIZE in the environment");
        using var scope = NewDisposeScope();
        int rank = group.Rank, world = group.WorldSize;
        double triangle = world * (world + 1) / 2.0;   // Σ (rank + 1)

        var x = full(1000, rank + 1.0f);
        group.AllReduce(x);
        Check(Close(x, full(1000, triangle)), "all_reduce sum float32");
        var avg = full([3, 4], rank + 1.0, dtype: ScalarType.Float64);
        group.AllReduce(avg, ReduceOp.Average);
        Check(Close(avg, full([3, 4], triangle / world, dtype: ScalarType.Float64)), "all_reduce average float64");
        var max = tensor(new long[] { rank, -rank });
        group.AllReduce(max, ReduceOp.Max);
        Check(max[0].item<long>() == world - 1 && max[1].item<long>() == 0, "all_reduce max int64");
        var min = tensor(new int[] { rank + 5 });
        group.AllReduce(min, ReduceOp.Min);
        Check(min.item<int>() == 5, "all_reduce min int32");
        var bf16 = full(8, rank + 1.0, dtype: ScalarType.BFloat16);
        group.AllReduce(bf16);
        Check(bf16.dtype == ScalarType.BFloat16 && Close(bf16, full(8, triangle)), "all_reduce sum bf16 (through fp32)");
        var strided = arange(12, dtype: ScalarType.Float32).view(3, 4).t();   // not contiguous
        group.AllReduce(strided);
        Check(Close(strided, arange(12, dtype: ScalarType.Float32).view(3, 4).t() * world), "all_reduce of a non-contiguous view, in place");
        var flag = tensor(new bool[] { rank == 1, false });
        group.AllReduce(flag, ReduceOp.Max);
        Check(flag[0].item<bool>() && !flag[1].item<bool>(), "all_reduce max bool");
        var big = full(3_000_000, (float)(rank + 1));   // 12 MB: many of Gloo's 1 MB segments
        group.AllReduce(big);
        Check(Close(big, full(3_000_000, triangle)), "all_reduce sum 12 MB");

        var root = rank == 1 ? arange(5, dtype: ScalarType.Int64) * 7 : zeros(5, dtype: ScalarType.Int64);
        group.Broadcast(root, root: 1);
        Check(Close(root, arange(5, dtype: ScalarType.Int64) * 7), "broadcast from rank 1");

        var gathered = group.AllGather(arange(3, dtype: ScalarType.Float32) + 10 * rank);
        Check(Close(gathered, cat(Enumerable.Range(0, world).Select(r => arange(3, dtype: ScalarType.Float32) + 10 * r).ToArray())),
            "all_gather in rank order");

        // Differentiable all-gather: the gradient of Σ w·gather(x) on every rank, summed over ranks, is world·w's block.
        var leaf = full([2, 3], rank + 1.0, dtype: ScalarType.Float64).requires_grad_();
        var weights = arange(world * 6, dtype: ScalarType.Float64).view(world * 2, 3);
        var all = group.AllGatherWithGradient(leaf);
        Check(Close(all.detach(), cat(Enumerable.Range(0, world).Select(r => full([2, 3], r + 1.0, dtype: ScalarType.Float64)).ToArray())),
            "all_gather with gradient: forward");
        (all * weights).sum().backward();
        Check(Close(leaf.grad!, weights[(2 * rank)..(2 * rank + 2)] * world), "all_gather with gradient: backward sums over ranks, this rank's block");

        var other = full([4], rank + 1.0, dtype: ScalarType.Float64).requires_grad_();
        var summed = group.AllReduceSumWithGradient(other);
        Check(Close(summed.detach(), full([4], triangle, dtype: ScalarType.Float64)), "all_reduce with gradient: forward");
        (summed * arange(4, dtype: ScalarType.Float64)).sum().backward();
        Check(Close(other.grad!, arange(4, dtype: ScalarType.Float64) * world), "all_reduce with gradient: backward sums over ranks");

        group.Barrier();
        Check(group.CommunicationTime > TimeSpan.Zero, "barrier; communication time counted");
    }

    /// <summary>Rank <paramref name="victim"/> dies (kill -9 of itself) after one all-reduce; the others must fail naming it.</summary>
    static void Die(int victim)
    {
        using var group = ProcessGroup.FromEnvironment() ?? throw new InvalidOperationException("no RANK/WORLD_SIZE in the environment");
        using var x = ones(1000);
        group.AllReduce(x);
        if (group.Rank == victim) Process.GetCurrentProcess().Kill();
        var clock = Stopwatch.StartNew();
        try
        {
            for (int i = 0; i < 1_000_000; i++) group.AllReduce(x);
            throw new InvalidOperationException("the all-reduces went on after a rank died");
        }
        catch (DistributedException e)
        {
            Console.WriteLine($"failed after {clock.Elapsed.TotalSeconds:F1} s: {e.Message}");
            Check(e.DeadRanks.Contains(victim) && e.Message.Contains($"rank {victim} died"), $"the error names rank {victim}");
            var again = Assert(() => group.AllReduce(x));
            Check(again is DistributedException, "the group stays failed");
        }
    }

    /// <summary>A peer of the job's network without the job's secret: with none and with a wrong one, rank 0's store must refuse it.</summary>
    static void Stranger(string host, int port)
    {
        foreach (var (what, secret) in new[] { ("no secret", Array.Empty<byte>()), ("a wrong secret",
            System.Text.Encoding.UTF8.GetBytes(StoreSecret.Generate())) })
        {
            var error = Assert(() => new StoreClient(host, port, rank: 1, worldSize: 2, secret, TimeSpan.FromSeconds(60)).Dispose());
            Console.WriteLine($"{what}: {error?.Message}");
            Check(error is DistributedException && error.Message.Contains("refused this rank's secret"), $"the store refuses a stranger with {what}");
        }
    }

    static Exception? Assert(Action action)
    {
        try
        {
            action();
            return null;
        }
        catch (Exception e)
        {
            return e;
        }
    }

    /// <summary>
    /// SimCLR + BYOL + Barlow Twins on a tiny Medformer, fp32, deterministic, on a fixed sequence of global batches of
    /// 2·<see cref="PerRank"/> samples: one process takes each whole batch, rank r of two takes its half.
    /// </summary>
    static void Train(string outputDirectory, long steps)
    {
        Determinism.Enable(seed: 5, threads: 1);
        using var group = ProcessGroup.FromEnvironment();
        int world = group?.WorldSize ?? 1, rank = group?.Rank ?? 0;
        Seeding.SeedEverything(5);
        var config = MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };
        using var task = new Pretraining(new MedformerModel(config), [(new SimClr(config.Dim), 1.0), (new Byol(config.Dim), 0.5), (new BarlowTwins(config.Dim,
            projectionDim: 16), 0.1)], momentum: 0.9);
        var options = new TrainerOptions { MaxSteps = steps, LearningRate = 1e-3, WarmupSteps = 2, LogEvery = 1, CheckpointEvery = steps, Seed = 5,
            Precision = Precision.Fp32 };
        var result = new Trainer(options, CPU, group: group).Fit(task, start => Batches(start, rank, 2 * PerRank / world), outputDirectory,
            log: entry => Console.WriteLine($"step {entry.Step} loss {entry.Loss:R}"));
        Console.WriteLine($"ok trained {result.Steps} steps on {world} process(es)");
    }

    const int PerRank = 8;

    static IEnumerable<Batch> Batches(long start, int rank, int size)
    {
        for (long index = start; ; index++)
        {
            using var scope = NewDisposeScope();
            using var generator = new Generator((ulong)(1000 + index));
            var base_ = randn([2 * PerRank, 1, 16, 16], generator: generator);
            var view1 = base_ + 0.1 * randn([2 * PerRank, 1, 16, 16], generator: generator);
            var view2 = base_.flip(3) + 0.1 * randn([2 * PerRank, 1, 16, 16], generator: generator);
            var metas = Enumerable.Range(rank * size, size)
                .Select(i => new SampleMeta("noise", $"noise[{index}:{i}]", i, i % 2 == 0 ? "chest" : "brain", "xray", Dimensionality.Image, [1, 1],
                    [])).ToList();
            var views = new List<BatchView>
            {
                new(scope.MoveToOuter(view1.narrow(0, rank * size, size).contiguous()), null, null),
                new(scope.MoveToOuter(view2.narrow(0, rank * size, size).contiguous()), null, null),
            };
            yield return new Batch(index, views, metas);
        }
    }
}
