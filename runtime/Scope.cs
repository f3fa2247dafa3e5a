using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// The rule for tensor lifetimes: each step runs in its own <see cref="DisposeScope"/>, so every temporary is freed
/// when the step ends, never by the garbage collector. A returned tensor is moved out to the caller's scope.
/// </summary>
public static class Scope
{
    public static void Run(Action body)
    {
        using var scope = NewDisposeScope();
        body();
    }

    public static T Run<T>(Func<T> body)
    {
        using var scope = NewDisposeScope();
        T result = body();
        if (result is Tensor tensor) scope.MoveToOuter(tensor);
        return result;
    }
}
