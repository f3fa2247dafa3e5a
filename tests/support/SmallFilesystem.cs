using System.Diagnostics;
using Xunit;

namespace Medformer.Tests;

/// <summary>
/// A tmpfs of a few KiB mounted on a folder the test made, so writes into it fail with ENOSPC as on a full disk;
/// unmounted (and the folder removed) on dispose. Mounting needs root: <see cref="FullDiskFactAttribute"/> skips,
/// saying so, where the suite runs as another user (CI and ./test.sh on these machines run as root).
/// </summary>
sealed class SmallFilesystem : IDisposable
{
    public SmallFilesystem(int kib)
    {
        Path = Directory.CreateTempSubdirectory("medformer-small-fs-").FullName;
        var mount = Run("mount", "-t", "tmpfs", "-o", $"size={kib}k,mode=0700", "tmpfs", Path);
        if (mount.ExitCode != 0) throw new InvalidOperationException($"mount tmpfs on {Path} failed: {mount.Error}");
    }

    public string Path { get; }

    /// <summary>Writes zeros into <paramref name="file"/> until the filesystem is full.</summary>
    public void Fill(string file = "filler")
    {
        using var stream = new FileStream(System.IO.Path.Combine(Path, file), FileMode.Create, FileAccess.Write, FileShare.None, bufferSize: 0);
        var block = new byte[1024];
        try
        {
            while (true) stream.Write(block);
        }
        catch (IOException)
        {
            // ENOSPC: full, as intended.
        }
    }

    public void Dispose()
    {
        Run("umount", "-l", Path);
        Directory.Delete(Path, recursive: true);
    }

    public static bool CanMount => Environment.UserName == "root" && File.Exists("/bin/mount");

    static (int ExitCode, string Error) Run(string file, params string[] args)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, error.Trim());
    }
}

/// <summary>A fact that fills a filesystem (<see cref="SmallFilesystem"/>); skipped, saying why, where tmpfs cannot be mounted.</summary>
public sealed class FullDiskFactAttribute : FactAttribute
{
    public FullDiskFactAttribute()
    {
        if (!SmallFilesystem.CanMount) Skip = "mounting a small tmpfs to fill needs root; this suite runs as " + Environment.UserName;
    }
}
