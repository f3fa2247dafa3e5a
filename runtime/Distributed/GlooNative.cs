using System.Runtime.InteropServices;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// P/Invoke on runtime/native/gloo_shim.cc (libmedformer_gloo.so, built next to the assemblies from Debian's
/// libgloo). Every call returns a status and fills a message buffer; nothing native throws into .NET.
/// </summary>
static unsafe partial class GlooNative
{
    public const string Library = "libmedformer_gloo.so";
    const int MessageCapacity = 2048;

    public enum DataType { Float32 = 0, Float64 = 1, Int32 = 2, Int64 = 3, UInt8 = 4 }

    public enum Status { Ok = 0, Gloo = 1, Io = 2, Store = 3, Argument = 4, Other = 5 }

    [LibraryImport(Library, EntryPoint = "mfg_connect", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Connect(int rank, int size, string hostname, string iface, long timeoutMs, IntPtr state,
        delegate* unmanaged<IntPtr, byte*, byte*, long, int> set, delegate* unmanaged<IntPtr, byte*, byte*, long, long*, int> get,
        delegate* unmanaged<IntPtr, byte*, long, int> wait, out IntPtr handle, byte* error, long capacity);

    [LibraryImport(Library, EntryPoint = "mfg_close")]
    public static partial void Close(IntPtr handle);

    [LibraryImport(Library, EntryPoint = "mfg_allreduce")]
    private static partial int AllReduce(IntPtr handle, void* data, long count, int dtype, int op, long timeoutMs, uint tag, byte* error, long capacity);

    [LibraryImport(Library, EntryPoint = "mfg_broadcast")]
    private static partial int Broadcast(IntPtr handle, void* data, long bytes, int root, long timeoutMs, uint tag, byte* error, long capacity);

    [LibraryImport(Library, EntryPoint = "mfg_allgather")]
    private static partial int AllGather(IntPtr handle, void* input, void* output, long bytes, long timeoutMs, uint tag, byte* error, long capacity);

    [LibraryImport(Library, EntryPoint = "mfg_barrier")]
    private static partial int Barrier(IntPtr handle, long timeoutMs, uint tag, byte* error, long capacity);

    /// <summary>Null when the shim and libgloo load, else the loader's reason with what to install.</summary>
    public static string? LoadError()
    {
        string path = Path.Combine(AppContext.BaseDirectory, Library);
        if (!File.Exists(path))
            return $"{path} is missing: the build compiles it from runtime/native/gloo_shim.cc when Gloo's headers are installed (apt-get install " +
                "libgloo-dev g++), then rebuild (./medformer or ./test.sh)";
        try
        {
            NativeLibrary.Load(path);
            return null;
        }
        catch (DllNotFoundException e)
        {
            string reason = e.Message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)[^1];
            return $"cannot load {path}: {reason} (apt-get install libgloo0)";
        }
    }

    public static (Status Status, string Message, IntPtr Handle) Connect(int rank, int size, string hostname, string iface, long timeoutMs, GCHandle store)
    {
        byte* error = stackalloc byte[MessageCapacity];
        error[0] = 0;
        int status = Connect(rank, size, hostname, iface, timeoutMs, GCHandle.ToIntPtr(store), &StoreSet, &StoreGet, &StoreWait, out var handle, error,
            MessageCapacity);
        return ((Status)status, Message(error), handle);
    }

    public static (Status, string) AllReduce(IntPtr handle, IntPtr data, long count, DataType type, ReduceOp op, long timeoutMs, uint tag)
    {
        byte* error = stackalloc byte[MessageCapacity];
        error[0] = 0;
        return ((Status)AllReduce(handle, (void*)data, count, (int)type, (int)op, timeoutMs, tag, error, MessageCapacity), Message(error));
    }

    public static (Status, string) Broadcast(IntPtr handle, IntPtr data, long bytes, int root, long timeoutMs, uint tag)
    {
        byte* error = stackalloc byte[MessageCapacity];
        error[0] = 0;
        return ((Status)Broadcast(handle, (void*)data, bytes, root, timeoutMs, tag, error, MessageCapacity), Message(error));
    }

    public static (Status, string) AllGather(IntPtr handle, void* input, void* output, long bytes, long timeoutMs, uint tag)
    {
        byte* error = stackalloc byte[MessageCapacity];
        error[0] = 0;
        return ((Status)AllGather(handle, input, output, bytes, timeoutMs, tag, error, MessageCapacity), Message(error));
    }

    public static (Status, string) Barrier(IntPtr handle, long timeoutMs, uint tag)
    {
        byte* error = stackalloc byte[MessageCapacity];
        error[0] = 0;
        return ((Status)Barrier(handle, timeoutMs, tag, error, MessageCapacity), Message(error));
    }

    static string Message(byte* error) => Marshal.PtrToStringUTF8((IntPtr)error) ?? "";

    // The store's callbacks, called by Gloo's rendezvous on the connecting thread. They never throw into native
    // code: a failure is kept on the store (its message reaches the caller) and reported as non-zero.

    static StoreClient Store(IntPtr state) => (StoreClient)GCHandle.FromIntPtr(state).Target!;

    [UnmanagedCallersOnly]
    static int StoreSet(IntPtr state, byte* key, byte* data, long length)
    {
        var store = Store(state);
        try
        {
            store.Set(Marshal.PtrToStringUTF8((IntPtr)key)!, new ReadOnlySpan<byte>(data, checked((int)length)).ToArray());
            return 0;
        }
        catch (Exception e)
        {
            return store.Failed(e);
        }
    }

    [UnmanagedCallersOnly]
    static int StoreGet(IntPtr state, byte* key, byte* data, long capacity, long* length)
    {
        var store = Store(state);
        try
        {
            var value = store.Get(Marshal.PtrToStringUTF8((IntPtr)key)!, store.Timeout);
            *length = value.Length;
            if (value.Length <= capacity) value.CopyTo(new Span<byte>(data, value.Length));
            return 0;
        }
        catch (Exception e)
        {
            return store.Failed(e);
        }
    }

    [UnmanagedCallersOnly]
    static int StoreWait(IntPtr state, byte* keys, long timeoutMs)
    {
        var store = Store(state);
        try
        {
            var deadline = DateTime.UtcNow + TimeSpan.FromMilliseconds(timeoutMs);
            foreach (string key in Marshal.PtrToStringUTF8((IntPtr)keys)!.Split('\n', StringSplitOptions.RemoveEmptyEntries))
                store.Get(key, Remaining(deadline));
            return 0;
        }
        catch (Exception e)
        {
            return store.Failed(e);
        }
    }

    static TimeSpan Remaining(DateTime deadline)
    {
        var left = deadline - DateTime.UtcNow;
        return left > TimeSpan.Zero ? left : TimeSpan.Zero;
    }
}
