using System.Runtime.InteropServices;
using TorchSharp;

namespace Medformer.Runtime;

/// <summary>
/// Deterministic mode for bitwise-reproducible CPU runs: a fixed thread count (CPU reductions split work by
/// thread), libtorch's deterministic-algorithms flag (TorchSharp 0.107 leaves
/// <c>torch.use_deterministic_algorithms</c> unimplemented, so we set <c>at::Context</c> directly) and a seed.
/// </summary>
public static unsafe class Determinism
{
    public static bool Enabled { get; private set; }

    public static void Enable(long seed, int threads)
    {
        TorchRuntime.SetThreads(threads);
        SetDeterministicAlgorithms(true);
        Seeding.SeedEverything(seed);
        Enabled = true;
    }

    public static void Disable()
    {
        SetDeterministicAlgorithms(false);
        Enabled = false;
    }

    /// <summary>libtorch's own view of the flag, read back from <c>at::globalContext()</c>.</summary>
    public static bool AlgorithmsDeterministic
    {
        get
        {
            var (context, get, _) = ContextFunctions();
            return ((delegate* unmanaged<IntPtr, byte>)get)(context) != 0;
        }
    }

    static void SetDeterministicAlgorithms(bool on)
    {
        var (context, _, set) = ContextFunctions();
        ((delegate* unmanaged<IntPtr, byte, byte, void>)set)(context, on ? (byte)1 : (byte)0, 0);
    }

    static (IntPtr Context, IntPtr Get, IntPtr Set) ContextFunctions()
    {
        TorchRuntime.EnsureLoaded();
        string directory = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;
        IntPtr lib = NativeLibrary.Load(Path.Combine(directory, "libtorch_cpu.so"));
        // at::globalContext(), at::Context::deterministicAlgorithms() const, at::Context::setDeterministicAlgorithms(bool, bool)
        IntPtr global = NativeLibrary.GetExport(lib, "_ZN2at13globalContextEv");
        IntPtr get = NativeLibrary.GetExport(lib, "_ZNK2at7Context23deterministicAlgorithmsEv");
        IntPtr set = NativeLibrary.GetExport(lib, "_ZN2at7Context26setDeterministicAlgorithmsEbb");
        IntPtr context = ((delegate* unmanaged<IntPtr>)global)();
        return (context, get, set);
    }
}
