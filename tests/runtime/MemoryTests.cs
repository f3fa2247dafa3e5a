using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Runtime;

public sealed class MemoryTests(ITestOutputHelper output)
{
    [Fact]
    public void TenThousandScopedStepsKeepResidentMemoryFlat()
    {
        Seeding.SeedEverything(1);
        using var model = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 8));
        using var optimizer = optim.AdamW(model.parameters(), lr: 1e-3);
        using var x = randn(16, 32);
        using var target = randn(16, 8);

        void Step() => Scope.Run(() =>
        {
            optimizer.zero_grad();
            var loss = nn.functional.mse_loss(model.forward(x), target);
            loss.backward();
            optimizer.step();
        });

        // The first few thousand steps grow the managed heap and tiered JIT code by a few MB, once; on a loaded machine
        // that one-off growth can land later. A leak grows in every window, so the smaller of two windows is the measure.
        for (int i = 0; i < 5_000; i++) Step();
        var windows = new long[2];
        for (int w = 0; w < windows.Length; w++)
        {
            GC.Collect();
            long before = ResidentBytes();
            for (int i = 0; i < 10_000; i++) Step();
            GC.Collect();
            windows[w] = ResidentBytes() - before;
        }
        long growth = windows.Min();
        output.WriteLine($"resident memory growth over two windows of 10,000 steps: {windows[0] / 1024.0:F0} KiB, {windows[1] / 1024.0:F0} KiB");
        Assert.True(growth < 5 * 1024 * 1024, $"resident memory grew by {growth / 1048576.0:F1} MB in each of two windows of 10,000 steps");
    }

    [Fact]
    public void ScopeFreesTemporariesAndKeepsTheResult()
    {
        using var a = ones(4, 4);
        Tensor? temporary = null;
        using var result = Scope.Run(() =>
        {
            temporary = a * 2;
            return temporary.sum();
        });
        Assert.True(temporary!.IsInvalid);
        Assert.Equal(32f, result.item<float>());
    }

    static long ResidentBytes()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException("no VmRSS in /proc/self/status");
    }
}
