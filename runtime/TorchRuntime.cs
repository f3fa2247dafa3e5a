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
            try
            {
                torch.InitializeDeviceType(DeviceType.CPU);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                throw new TorchLoadException(Diagnose(e));
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

    static string Diagnose(Exception failure)
    {
        string directory = Path.GetDirectoryName(typeof(torch).Assembly.Location) ?? AppContext.BaseDirectory;
        string library = Path.Combine(directory, NativeLibrary);
        if (!File.Exists(library))
            return $"TorchSharp's native library {library} is missing: the build did not copy libtorch's native files. Rebuild with ./medformer or ./test.sh.";
        string? reason = DlopenError(library);
        if (reason == null)
            return $"TorchSharp failed to initialise although {library} loads: {FirstLine(failure.Message)}";
        string hint = reason.Contains("GLIBCXX_", StringComparison.Ordinal)
            ? " The system's libstdc++ is older than the one TorchSharp was built with, and this copy was not patched for it; rebuild on this machine (./medformer or ./test.sh) so the build patches it."
            : reason.Contains("No such file", StringComparison.Ordinal)
                ? " A library it depends on is missing; rebuild with ./medformer or ./test.sh."
                : "";
        return $"Cannot load TorchSharp's native library {library}: {reason}.{hint}";
    }

    static string FirstLine(string text) => text.Split('\n', 2)[0].Trim();

    /// <summary>The dynamic loader's own reason for refusing a library, or null when it loads.</summary>
    internal static string? DlopenError(string path)
    {
        try
        {
            System.Runtime.InteropServices.NativeLibrary.Free(System.Runtime.InteropServices.NativeLibrary.Load(path));
            return null;
        }
        catch (DllNotFoundException e)
        {
            return e.Message;
        }
        catch (BadImageFormatException e)
        {
            return e.Message;
        }
    }
}
