using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>The build property that switches TorchSharp's native backend really switches the packages.</summary>
public sealed class BuildTests
{
    [Theory]
    [InlineData("cpu", "libtorch-cpu-linux-x64", "TorchSharp-cuda-linux")]
    [InlineData("cuda", "TorchSharp-cuda-linux", "libtorch-cpu-linux-x64")]
    public void TorchBackendSelectsThePackage(string backend, string expected, string absent)
    {
        var result = Repo.Run("dotnet", ["msbuild", "runtime/Medformer.Runtime.csproj", "-getItem:PackageReference", $"-p:TorchBackend={backend}", "-nologo"]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains($"\"Identity\": \"{expected}\"", result.Stdout);
        Assert.DoesNotContain($"\"Identity\": \"{absent}\"", result.Stdout);
        Assert.Contains("\"Identity\": \"TorchSharp\"", result.Stdout);
    }

    [Fact]
    public void UnknownBackendIsRefused()
    {
        var result = Repo.Run("dotnet", ["msbuild", "runtime/Medformer.Runtime.csproj", "-t:CheckTorchBackend", "-p:TorchBackend=rocm", "-nologo"]);
        Assert.NotEqual(0, result.ExitCode);
        Assert.Contains("TorchBackend must be 'cpu' or 'cuda', not 'rocm'", result.Stdout);
    }
}
