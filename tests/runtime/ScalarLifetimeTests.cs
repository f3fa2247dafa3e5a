using System.Diagnostics;
using System.Reflection;
using Medformer.Bench;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

/// <summary>
/// TorchSharp's implicit Scalars (and its own literal ones) cannot be finalized while libtorch reads them: the
/// TorchSharp.dll the build ships is the rewritten one (runtime/build/KeepAlive), and worker threads that run ops taking
/// implicit Scalars see every result right while another thread forces collections and finalizers without pause.
/// On stock TorchSharp 0.107 the same loop finds 14–25 faults per million calls: libtorch's "Expected false to be
/// true" and "INTERNAL ASSERT FAILED at c10/core/Scalar.h", and AdamW updates that differ silently (README, "Runtime").
/// 2,000,000 checked calls by default (about 7 s on 2 cores), 50,000,000 with MEDFORMER_FULL_TESTS=1 (./test.sh
/// --full); MEDFORMER_SCALAR_STRESS_CALLS=N sets the count, e.g. to measure a stock TorchSharp.dll put in its place.
/// </summary>
public sealed class ScalarLifetimeTests(ITestOutputHelper output)
{
    static long Calls => Environment.GetEnvironmentVariable("MEDFORMER_SCALAR_STRESS_CALLS") is { } n ? long.Parse(n)
        : Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 50_000_000 : 2_000_000;

    [Fact]
    public void TheShippedTorchSharpKeepsArgumentsAliveAcrossNativeCalls()
    {
        var marker = typeof(torch).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "Medformer.KeepAlive");
        Assert.True(marker is not null, $"{typeof(torch).Assembly.Location} is stock TorchSharp, not the copy runtime/build/KeepAlive rewrites");
        Assert.StartsWith("2;", marker!.Value);
        Assert.Equal(marker.Value, TorchRuntime.KeepAliveMarker);
    }

    [Fact]
    public void NoFaultsWhileAnotherThreadForcesCollections()
    {
        TorchRuntime.EnsureLoaded();
        var report = ScalarStress.Run(Calls, workers: 3);
        output.WriteLine(report.ToString());
        Assert.True(report.Checked >= Calls, $"only {report.Checked} calls were checked");
        Assert.True(report.Collections > 100, $"only {report.Collections} forced collections ran beside the workers");
        Assert.True(report.Faults == 0, $"{report.Faults} faults in {report.Checked} checked calls; first: {report.FirstFault}");
    }

    /// <summary>
    /// torch.stack of a lazy sequence outside any DisposeScope: nothing but TorchSharp's enumeration refers to the
    /// tensors the sequence makes, so their finalizers may run before libtorch retains them. Before the rewrite held
    /// such sequences as arrays (KeepAlive marker 2), this killed the test host with a segfault within seconds; the
    /// tensors are left to the finalizer on purpose.
    /// </summary>
    [Fact]
    public void LazyTensorSequencesOutliveTheNativeCallThatReadsThem()
    {
        TorchRuntime.EnsureLoaded();
        long stacks = Calls / 10, done = 0, wrong = 0;
        using var pressure = new GcPressure();
        var threads = Enumerable.Range(0, 3).Select(w => new Thread(() =>
        {
            var random = new Random(2000 + w);
            for (long i = 0; i < stacks / 3; i++)
            {
                var values = Enumerable.Range(0, 64).Select(_ => (float)random.NextDouble()).ToArray();
                using var stacked = torch.stack(values.Select(v => torch.full(3, v)));
                using var expected = torch.tensor(values).unsqueeze(1).expand(64, 3);
                using var same = stacked.eq(expected).all();
                if (!same.item<bool>()) Interlocked.Increment(ref wrong);
                Interlocked.Increment(ref done);
            }
        }) { IsBackground = true, Name = $"lazy stack worker {w}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        output.WriteLine($"{done:N0} stacks of 64 lazily made tensors, {wrong} wrong, {pressure.Collections:N0} forced collections");
        Assert.Equal(0, wrong);
    }
}

/// <summary>The stress loop: each worker checks ops that take implicit Scalars against values known exactly.</summary>
sealed record ScalarStress(long Checked, long Faults, long Collections, string? FirstFault, TimeSpan Elapsed)
{
    /// <summary>Faults by kind, most frequent first.</summary>
    public string Kinds { get; init; } = "";

    public override string ToString() =>
        $"{Checked:N0} checked calls, {Faults} faults, {Collections:N0} forced collections, {Elapsed.TotalSeconds:F1} " +
            $"s{(FirstFault is null ? "" : $"; first fault: {FirstFault}; by kind: {Kinds}")}";

    public static ScalarStress Run(long calls, int workers)
    {
        long done = 0, faults = 0;
        string? first = null;
        var kinds = new Dictionary<string, int>();
        var clock = Stopwatch.StartNew();
        using var pressure = new GcPressure();
        var threads = Enumerable.Range(0, workers).Select(w => new Thread(() =>
        {
            using var worker = new Worker(seed: 1000 + w);
            long share = (calls + workers - 1) / workers;
            while (worker.Checked < share)
                if (worker.Round() is { } fault)
                {
                    if (Interlocked.Increment(ref faults) == 1) first = fault;
                    lock (kinds) kinds[fault.Split(" gave ")[0]] = kinds.GetValueOrDefault(fault.Split(" gave ")[0]) + 1;
                }
            Interlocked.Add(ref done, worker.Checked);
        }) { IsBackground = true, Name = $"stress worker {w}" }).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        return new ScalarStress(done, faults, pressure.Collections, first, clock.Elapsed)
        {
            Kinds = string.Join("; ", kinds.OrderByDescending(k => k.Value).Select(k => $"{k.Value} × {k.Key}")),
        };
    }

    /// <summary>
    /// One thread's ops. Each value is checked exactly: x·0.5, x + y and x² are single IEEE float operations, clamp
    /// is exact, and the AdamW step is compared bit for bit with the same update written with explicit Scalars that
    /// stay referenced until the call returns.
    /// </summary>
    sealed class Worker : IDisposable
    {
        readonly Random random;
        readonly TorchSharp.Modules.Parameter param;
        readonly Tensor twin, exp_avg, exp_avg_sq;
        optim.Optimizer adamw;
        int step;
        public long Checked;

        const double Lr = 1e-3, Beta1 = 0.9, Beta2 = 0.999, Eps = 1e-8, WeightDecay = 0.01;

        public Worker(int seed)
        {
            random = new Random(seed);
            param = new TorchSharp.Modules.Parameter(torch.zeros(8));  // takes the tensor's handle
            twin = torch.zeros(8);
            exp_avg = torch.zeros(8);
            exp_avg_sq = torch.zeros(8);
            adamw = NewAdamW();
        }

        optim.Optimizer NewAdamW() => optim.AdamW([param], Lr, Beta1, Beta2, Eps, WeightDecay);

        /// <summary>About 100 checked calls; the first wrong value or exception, or null.</summary>
        public string? Round()
        {
            using var scope = torch.NewDisposeScope();
            try
            {
                for (int i = 0; i < 24; i++)
                {
                    float v = (float)(random.NextDouble() * 4 - 2), u = (float)(random.NextDouble() * 4 - 2);
                    using var x = torch.tensor(v);
                    using var y = torch.tensor(u);
                    if (Check(x * 0.5, v * 0.5f, "x * 0.5") is { } a) return a;
                    if (Check(x.add(y), v + u, "x.add(y)") is { } b) return b;
                    if (Check(x.pow(2.0), v * v, "x.pow(2.0)") is { } c) return c;
                    if (Check(x.clamp_min(0.25), Math.Max(v, 0.25f), "x.clamp_min(0.25)") is { } d) return d;
                }
                return AdamWStep();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Checked++;
                return $"{e.GetType().Name}: {e.Message.Split('\n')[0]} {e.StackTrace?.Split('\n').FirstOrDefault(l => l.Contains("Medformer"))?.Trim()}";
            }
        }

        string? Check(Tensor result, float expected, string op)
        {
            Checked++;
            float actual = result.ToSingle();
            result.Dispose();
            return BitConverter.SingleToInt32Bits(actual) == BitConverter.SingleToInt32Bits(expected) ? null : $"{op} gave {actual}, expected {expected}";
        }

        string? AdamWStep()
        {
            step++;
            using var grad = torch.rand(8);
            param.grad = grad.clone();
            adamw.step();  // TorchSharp's own literal and implicit Scalars, about nine per parameter
            TwinStep(grad);
            Checked += 9;
            using var difference = param.detach().sub(twin).abs().max();
            float largest = difference.ToSingle();
            if (largest == 0) return null;
            string fault = $"AdamW step {step} differs from its explicit-Scalar twin by {largest}";
            Restart();  // a fault may have corrupted the optimizer's moments too: both start again from zero
            return fault;
        }

        // AdamW.step as TorchSharp 0.107 writes it, with each Scalar held by `using` until the call has returned.
        void TwinStep(Tensor grad)
        {
            double bc1 = 1 - Math.Pow(Beta1, step), bc2 = 1 - Math.Pow(Beta2, step);
            using var decay = (1 - Lr * WeightDecay).ToScalar();
            using var beta1 = Beta1.ToScalar();
            using var oneMinusBeta1 = (1 - Beta1).ToScalar();
            using var beta2 = Beta2.ToScalar();
            using var oneMinusBeta2 = (1 - Beta2).ToScalar();
            using var sqrtBc2 = Math.Sqrt(bc2).ToScalar();
            using var eps = Eps.ToScalar();
            using var stepSize = (-(Lr / bc1)).ToScalar();
            twin.mul_(decay);
            exp_avg.mul_(beta1).add_(grad, oneMinusBeta1);
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, oneMinusBeta2);
            using var root = exp_avg_sq.sqrt();
            using var denom = root.div(sqrtBc2).add_(eps);
            twin.addcdiv_(exp_avg, denom, stepSize);
        }

        void Restart()
        {
            adamw.Dispose();
            using (torch.no_grad())
                foreach (var t in new[] { param, twin, exp_avg, exp_avg_sq }) t.zero_();
            step = 0;
            adamw = NewAdamW();
        }

        public void Dispose()
        {
            adamw.Dispose();
            foreach (var t in new[] { param, twin, exp_avg, exp_avg_sq }) t.Dispose();
        }
    }
}
