using System.Text.RegularExpressions;

namespace Medformer.Tests;

/// <summary>
/// Runs a program under /usr/bin/time -v and reads its peak resident memory (the kernel's VmHWM at exit), for tests
/// that bound what a hostile input may cost. The program's own stderr comes first, time's report after it.
/// </summary>
static partial class PeakMemory
{
    public sealed record Measured(int ExitCode, string Stdout, string Stderr, long PeakBytes)
    {
        /// <summary>The program's stderr without time's report.</summary>
        public string ProgramStderr => string.Join('\n', Stderr[..Math.Max(0, Stderr.IndexOf("\tCommand being timed", StringComparison.Ordinal))]
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Where(line => !line.StartsWith("Command exited with", StringComparison.Ordinal)));
    }

    public static Measured Run(string file, IEnumerable<string> args, string workingDirectory, IReadOnlyDictionary<string, string> environment)
    {
        var result = Repo.Run("/usr/bin/time", ["-v", file, .. args], workingDirectory, 300, environment);
        var match = MaxResident().Match(result.Stderr);
        if (!match.Success) throw new InvalidOperationException("/usr/bin/time -v printed no maximum resident set size: " + result.Stderr);
        // time -v reports the child's own status as "Exit status: N" and exits with it.
        return new Measured(result.ExitCode, result.Stdout, result.Stderr, long.Parse(match.Groups[1].Value) * 1024);
    }

    [GeneratedRegex(@"Maximum resident set size \(kbytes\): (\d+)")]
    private static partial Regex MaxResident();
}
