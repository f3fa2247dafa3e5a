using Medformer.Runtime;
using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>
/// The CLI run against TorchSharp's unpatched native library: on a system whose libstdc++ lacks GLIBCXX_3.4.32
/// (Debian 12) the user gets one line naming the library and the missing version, not a probe trace. Newer systems
/// load it; a stand-in library that needs a version no libstdc++ has takes the same error path on every system.
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
        WithNativeLibrary(original, (app, result) =>
        {
            if (systemHasVersion)
                Assert.Equal(0, result.ExitCode);  // a newer libstdc++ needs no patch (the error path: the test below)
            else
                AssertOneClearLine(app, result, Version);
        });
    }

    [Fact]
    public void ALibraryNeedingALibstdcxxNoSystemHasGivesOneClearLine()
    {
        // The error path on every system: a stand-in for TorchSharp's library that needs GLIBCXX_9.9.99. It links a
        // stub named libstdc++.so.6 that defines that version; the loader meets the system's, which lacks it.
        string build = Directory.CreateTempSubdirectory("medformer-future-glibcxx-").FullName;
        try
        {
            const string Future = "GLIBCXX_9.9.99";
            Directory.CreateDirectory(Path.Combine(build, "stub"));
            File.WriteAllText(Path.Combine(build, "v.map"), $"{Future} {{ global: medformer_future; }};\n");
            File.WriteAllText(Path.Combine(build, "stub.cc"), "extern \"C\" void medformer_future() {}\n");
            File.WriteAllText(Path.Combine(build, "lib.cc"),
                "extern \"C\" void medformer_future();\nextern \"C\" void medformer_uses() { medformer_future(); }\n");
            string stub = Path.Combine(build, "stub", "libstdc++.so.6"), library = Path.Combine(build, "libLibTorchSharp.so");
            var made = Repo.Run("g++", ["-shared", "-fPIC", $"-Wl,--version-script={Path.Combine(build, "v.map")}", "-Wl,-soname,libstdc++.so.6",
                "-o", stub, Path.Combine(build, "stub.cc")]);
            Assert.True(made.ExitCode == 0, made.Stderr);
            made = Repo.Run("g++", ["-shared", "-fPIC", "-nostdlib", "-o", library, Path.Combine(build, "lib.cc"), stub]);
            Assert.True(made.ExitCode == 0, made.Stderr);

            Assert.Contains(Future, TorchRuntime.DlopenError(library));
            WithNativeLibrary(library, (app, result) => AssertOneClearLine(app, result, Future));
        }
        finally
        {
            Directory.Delete(build, recursive: true);
        }
    }

    /// <summary>Runs <c>medformer info</c> from a copy of the CLI whose libLibTorchSharp.so is <paramref name="library"/>.</summary>
    static void WithNativeLibrary(string library, Action<string, Repo.Result> check)
    {
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
            File.Copy(library, Path.Combine(app, "libLibTorchSharp.so"));
            check(app, Repo.Run(Path.Combine(app, "medformer"), ["info"], timeoutSeconds: 120));
        }
        finally
        {
            Directory.Delete(app, recursive: true);
        }
    }

    static void AssertOneClearLine(string app, Repo.Result result, string version)
    {
        Assert.Equal(3, result.ExitCode);
        string[] lines = result.Stderr.Trim().Split('\n');
        Assert.Single(lines);
        Assert.Contains(Path.Combine(app, "libLibTorchSharp.so"), lines[0]);
        Assert.Contains(version, lines[0]);
        Assert.Contains("rebuild", lines[0]);
        Assert.DoesNotContain("LoadNativeBackend", result.Stdout + result.Stderr);
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
