using TorchSharp;

namespace Medformer.Runtime;

/// <summary>
/// Loads TorchSharp's native backend, the same way for every entry point (CLI, tests, benchmarks), and turns a
/// failure into one message that names the library and what it lacks instead of TorchSharp's probe trace.
/// </summary>
public static class TorchRuntime
{
    const string NativeLibrary = "libLibTorchSharp.so";
    static readonly Lock Gate = new();
    static bool loaded;

    public static void EnsureLoaded()
    {
        lock (Gate)
        {
            if (loaded) return;
            // Ask the dynamic loader first: when it refuses, TorchSharp would print a long probe trace to stdout and
            // copy 600 MB of libtorch into bin/cpu before failing the same way.
            string library = Path.Combine(NativeDirectory, NativeLibrary);
            if (!File.Exists(library))
                throw new TorchLoadException($"TorchSharp's native library {library} is missing: the build did not copy libtorch's native files. " +
                    "Rebuild with ./medformer or ./test.sh.");
            if (DlopenError(library) is { } reason) throw new TorchLoadException(Describe(library, reason));
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new TorchLoadException($"TorchSharp failed to initialise although {library} loads: {e.Message.Split('\n', 2)[0].Trim()}");
            }
            loaded = true;
        }
    }

    /// <summary>libtorch's intra-op thread count (PyTorch's torch.set_num_threads).</summary>
    public static void SetThreads(int threads)
    {
        if (threads < 1) throw new ArgumentOutOfRangeException(nameof(threads), threads, "--threads must be at least 1.");
        EnsureLoaded();
        torch.set_num_threads(threads);
    }

    public static int Threads
    {
        get { EnsureLoaded(); return torch.get_num_threads(); }
    }

    /// <summary>
    /// What runtime/build/KeepAlive did to the loaded TorchSharp.dll ("1; N native calls in M methods"), or null for a
    /// stock TorchSharp, whose implicit Scalars can be freed while libtorch reads them.
    /// </summary>
    public static string? KeepAliveMarker =>
        typeof(torch).Assembly.GetCustomAttributes(typeof(System.Reflection.AssemblyMetadataAttribute), false)
            .Cast<System.Reflection.AssemblyMetadataAttribute>()
            .FirstOrDefault(a => a.Key == "Medformer.KeepAlive")?.Value;

    static string NativeDirectory => Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;

    static string Describe(string library, string reason)
    {
        string hint = reason.Contains("GLIBCXX_", StringComparison.Ordinal)
            ? " The system's libstdc++ is older than the one TorchSharp was built with and this copy was not patched for it: rebuild on this machine " +
                "(./medformer or ./test.sh) and the build patches it."
            : reason.Contains("No such file", StringComparison.Ordinal)
                ? " A library it depends on is missing: rebuild with ./medformer or ./test.sh."
                : "";
        return $"cannot load TorchSharp's native library {library}: {reason}.{hint}";
    }

    /// <summary>The dynamic loader's own reason for refusing a library, or null when it loaded it.</summary>
    internal static string? DlopenError(string path)
    {
        try
        {
            System.Runtime.InteropServices.NativeLibrary.Load(path);  // stays loaded: TorchSharp loads it next
            return null;
        }
        catch (DllNotFoundException e)
        {
            // .NET wraps dlerror()'s text in advice about strace and LD_DEBUG; the loader's reason is the last line.
            return e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
        }
        catch (BadImageFormatException e)
        {
            return e.Message;
        }
    }
}
