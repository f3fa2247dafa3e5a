using System.Diagnostics;

namespace Medformer.Tests;

/// <summary>Paths in the checkout and a way to run its programs, for tests that go end to end.</summary>
static class Repo
{
    public static string Root { get; } = FindRoot();

    /// <summary>The built medformer command.</summary>
    public static string Cli => Path.Combine(CliDirectory, "medformer");

    /// <summary>A MEDFORMER_HOME for tests, kept between runs so the phantom corpus is generated once.</summary>
    public static string TestHome { get; } = Directory.CreateDirectory(Path.Combine(Path.GetTempPath(), "medformer-test-home")).FullName;

    public static string CliDirectory => Path.Combine(Root, "cli", "bin", "Release", "net10.0", "linux-x64");

    static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "Medformer.sln"))) return dir.FullName;
        throw new InvalidOperationException("Medformer.sln not found above " + AppContext.BaseDirectory);
    }

    public sealed record Result(int ExitCode, string Stdout, string Stderr);

    public static Result Run(string file, IEnumerable<string> args, string? workingDirectory = null, int timeoutSeconds = 300,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo(file)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workingDirectory ?? Root,
        };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start " + file);
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeoutSeconds * 1000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} ran past {timeoutSeconds} s");
        }
        return new Result(process.ExitCode, stdout.Result, stderr.Result);
    }
}
