using System.Runtime.InteropServices;

namespace Medformer.Bench;

/// <summary>
/// glibc's own account of the heap (mallinfo2): what libtorch's CPU allocator has in use, and what malloc keeps
/// freed in its arenas instead of returning to the kernel. Resident memory that grows while the bytes in use and the
/// live tensors stay flat is the allocator's retention, not a leak.
/// </summary>
public static partial class Malloc
{
    [StructLayout(LayoutKind.Sequential)]
    struct MallInfo2
    {
        public nuint Arena, Ordblks, Smblks, Hblks, Hblkhd, Usmblks, Fsmblks, Uordblks, Fordblks, Keepcost;
    }

    [LibraryImport("libc", EntryPoint = "mallinfo2")]
    private static partial MallInfo2 Native();

    /// <summary>MiB in use (arenas and mmapped chunks), and MiB free but held in the arenas; NaN where glibc is absent.</summary>
    public static (double InUseMiB, double HeldFreeMiB) Now()
    {
        try
        {
            var info = Native();
            return ((info.Uordblks + info.Hblkhd) / 1048576.0, info.Fordblks / 1048576.0);
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            return (double.NaN, double.NaN);
        }
    }
}
