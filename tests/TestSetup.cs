using System.Runtime.CompilerServices;
using Medformer.Runtime;

namespace Medformer.Tests;

static class TestSetup
{
    /// <summary>Tests load TorchSharp the way the CLI and the benchmarks do.</summary>
    [ModuleInitializer]
    internal static void LoadTorch() => TorchRuntime.EnsureLoaded();
}
