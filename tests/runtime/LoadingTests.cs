using System.Diagnostics;
using Medformer.Runtime;
using TorchSharp;
using Xunit;

namespace Medformer.Tests.Runtime;

public sealed class LoadingTests
{
    static string NativeDirectory => Path.GetDirectoryName(typeof(torch).Assembly.Location)!;

    [Fact]
    public void TorchSharpLoadsAndComputes()
    {
        using var a = torch.ones(3, 4);
        using var b = torch.ones(4, 2);
        using var c = a.matmul(b);
        Assert.Equal(4f, c[0, 0].item<float>());
    }

    [Fact]
    public void LoadedLibraryResolvesEverySymbolEagerly()
    {
        // What the build ships must load with immediate binding too (LD_BIND_NOW), not only lazily.
        var start = new ProcessStartInfo("/bin/sh", ["-c", "LD_BIND_NOW=1 ldd -r \"$0\" 2>&1", Path.Combine(NativeDirectory, "libLibTorchSharp.so")])
        {
            RedirectStandardOutput = true,
        };
        using var ldd = Process.Start(start)!;
        string output = ldd.StandardOutput.ReadToEnd();
        ldd.WaitForExit();
        // ldd reports the weak version it could not find; only a hard miss would stop the loader.
        var misses = output.Split('\n').Where(line => line.Contains("not found") && !line.Contains("weak version"));
        Assert.Empty(misses);
        Assert.DoesNotContain("undefined symbol", output);
    }

    [Fact]
    public void UnloadableLibraryIsExplainedByTheLoader()
    {
        // The diagnosis path: dlopen's own reason, naming the library, rather than TorchSharp's probe trace.
        string bogus = Path.Combine(Path.GetTempPath(), $"medformer-not-a-library-{Guid.NewGuid():N}.so");
        File.WriteAllText(bogus, "not an ELF file");
        try
        {
            string? reason = TorchRuntime.DlopenError(bogus);
            Assert.NotNull(reason);
            Assert.Contains(bogus, reason);
        }
        finally { File.Delete(bogus); }
    }
}
