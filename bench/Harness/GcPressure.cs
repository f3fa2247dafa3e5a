using System.Diagnostics;

namespace Medformer.Bench;

/// <summary>
/// A thread that forces garbage collections and runs finalizers without pause, so that any object a native call
/// still needs but nothing references is freed during that call: the condition under which TorchSharp's implicit
/// Scalars failed. Gen-0 collections find the newest objects (a Scalar made for one call); every 64th is a full one.
/// </summary>
public sealed class GcPressure : IDisposable
{
    readonly CancellationTokenSource stop = new();
    readonly Thread thread;
    long collections;

    public GcPressure()
    {
        thread = new Thread(Loop) { IsBackground = true, Name = "forced GC" };
        thread.Start();
    }

    public long Collections => Interlocked.Read(ref collections);

    void Loop()
    {
        while (!stop.IsCancellationRequested)
        {
            GC.Collect(Interlocked.Increment(ref collections) % 64 == 0 ? GC.MaxGeneration : 0);
            GC.WaitForPendingFinalizers();
        }
    }

    public void Dispose()
    {
        stop.Cancel();
        thread.Join();
        stop.Dispose();
    }
}
