using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>
/// The CLI run against TorchSharp's unpatched native library: on a system whose libstdc++ lacks GLIBCXX_3.4.32
/// (Debian 12) the user gets one line naming the library and the missing version, not a probe trace.
/// </summary>
public sealed class LoadFailureTests
{
    const string Version = "GLIBCXX_3.4.32";

    [Fact]
    public void UnpatchedLibraryGivesOneClearLine()
    {
        string original = Path.Combine(NuGetPackages(), "torchsharp", "0.107.0", "runtimes", "linux-x64", "native", "libLibTorchSharp.so");
        Assert.True(File.Exists(original), original + " is missing");
        bool systemHasVersion = File.ReadAllText("/usr/lib/x86_64-linux-gnu/libstdc++.so.6").Contains(Version + "\0");

        string app = Directory.CreateTempSubdirectory("medformer-unpatched-").FullName;
        try
        {
            foreach (string file in Directory.EnumerateFiles(Repo.CliDirectory))
            {
                string target = Path.Combine(app, Path.GetFileName(file));
                if (file.EndsWith(".so", StringComparison.Ordinal) || file.Contains(".so.", StringComparison.Ordinal))
                    File.CreateSymbolicLink(target, file);  // libtorch is large; links keep $ORIGIN lookups in this folder
                else
                    File.Copy(file, target);
            }
            File.Delete(Path.Combine(app, "libLibTorchSharp.so"));
            File.Copy(original, Path.Combine(app, "libLibTorchSharp.so"));

            var result = Repo.Run(Path.Combine(app, "medformer"), ["info"], timeoutSeconds: 120);
            if (systemHasVersion)
            {
                Assert.Equal(0, result.ExitCode);  // a newer libstdc++ needs no patch
                return;
            }
            Assert.Equal(3, result.ExitCode);
            string[] lines = result.Stderr.Trim().Split('\n');
            Assert.Single(lines);
            Assert.Contains(Path.Combine(app, "libLibTorchSharp.so"), lines[0]);
            Assert.Contains(Version, lines[0]);
            Assert.Contains("rebuild", lines[0]);
            Assert.DoesNotContain("LoadNativeBackend", result.Stdout + result.Stderr);
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    [Fact]
    public void PatchedLibraryInTheBuildMarksOnlyThatVersionWeak()
    {
        string patched = Path.Combine(Repo.CliDirectory, "libLibTorchSharp.so");
        var result = Repo.Run("readelf", ["-V", "-W", patched]);
        Assert.Equal(0, result.ExitCode);
        var weak = result.Stdout.Split('\n').Where(line => line.Contains("Flags: WEAK")).ToList();
        bool systemHasVersion = File.ReadAllText("/usr/lib/x86_64-linux-gnu/libstdc++.so.6").Contains(Version + "\0");
        if (systemHasVersion)
            Assert.Empty(weak);
        else
            Assert.Equal(Version, Assert.Single(weak).Split("Name: ")[1].Split(' ')[0]);
    }

    static string NuGetPackages() =>
        Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } custom
            ? custom
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
}
