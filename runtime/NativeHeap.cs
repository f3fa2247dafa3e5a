using System.Runtime.InteropServices;

namespace Medformer.Runtime;

/// <summary>
/// glibc's allocator, which libtorch's CPU tensors come from, keeps freed blocks in its arenas rather than returning
/// them to the kernel; a long run's resident memory then follows the arenas' high-water mark, not what is in use
/// (README, "where resident memory goes"). <see cref="ReleaseFreed"/> returns the free pages, as PyTorch users do
/// with <c>ctypes.CDLL("libc.so.6").malloc_trim(0)</c>. A no-op where there is no glibc.
/// </summary>
public static partial class NativeHeap
{
    [LibraryImport("libc", EntryPoint = "malloc_trim")]
    private static partial int MallocTrim(nuint pad);

    static bool unavailable;

    /// <summary>Returns malloc's free pages to the kernel (milliseconds); true when glibc did.</summary>
    public static bool ReleaseFreed()
    {
        if (unavailable || !OperatingSystem.IsLinux()) return false;
        try
        {
            return MallocTrim(0) != 0;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            unavailable = true;  // musl and other C libraries have no malloc_trim
            return false;
        }
    }
}
