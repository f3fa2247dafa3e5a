using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Medformer.Runtime.Distributed;

namespace Medformer.Tests.Distributed;

/// <summary>Starts the ranks of a job on 127.0.0.1 as child processes with torchrun's variables, and collects what they print.</summary>
static class Ranks
{
    public sealed record Rank(int Index, Process Process, Task<string> Stdout, Task<string> Stderr);

    /// <summary>A TCP port free at the moment (the store binds it next).</summary>
    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The test assembly's <see cref="Worker"/> as <paramref name="world"/> ranks (null: one process, no variables).</summary>
    public static Rank[] StartWorkers(int? world, params string[] args) =>
        Start(world, Dotnet, ["exec", typeof(Worker).Assembly.Location, "worker", .. args]);

    public static Rank[] Start(int? world, string file, string[] args, IReadOnlyDictionary<string, string>? environment = null)
    {
        int port = FreePort();
        string secret = StoreSecret.Generate();
        return [.. Enumerable.Range(0, world ?? 1).Select(rank =>
        {
            var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo.Root };
            foreach (string arg in args) start.ArgumentList.Add(arg);
            foreach (var (key, value) in environment ?? new Dictionary<string, string>()) start.Environment[key] = value;
            foreach (string key in new[] { "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR",
                "MASTER_PORT" }) start.Environment.Remove(key);
            if (world is { } w)
            {
                start.Environment["RANK"] = start.Environment["LOCAL_RANK"] = rank.ToString();
                start.Environment["WORLD_SIZE"] = start.Environment["LOCAL_WORLD_SIZE"] = w.ToString();
                start.Environment["MASTER_ADDR"] = "127.0.0.1";
                start.Environment["MASTER_PORT"] = port.ToString();
                start.Environment["MEDFORMER_DIST_TIMEOUT"] = "60";
                start.Environment[StoreSecret.Variable] = secret;   // as the launcher does
            }
            var process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {file}");
            return new Rank(rank, process, process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
        })];
    }

    /// <summary>Waits for every rank (killing all of them past <paramref name="timeoutSeconds"/>) and gives each one's exit code and output.</summary>
    public static (int ExitCode, string Stdout, string Stderr)[] Wait(Rank[] ranks, int timeoutSeconds = 120)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(timeoutSeconds);
        foreach (var rank in ranks)
        {
            var left = deadline - DateTime.UtcNow;
            if (!rank.Process.WaitForExit(left > TimeSpan.Zero ? left : TimeSpan.Zero))
            {
                foreach (var other in ranks) if (!other.Process.HasExited) other.Process.Kill(entireProcessTree: true);
                throw new TimeoutException($"rank {rank.Index} ran past {timeoutSeconds} s: {Describe(ranks)}");
            }
        }
        return [.. ranks.Select(r => (r.Process.ExitCode, r.Stdout.Result, r.Stderr.Result))];
    }

    static string Describe(Rank[] ranks) => string.Join("; ", ranks.Select(r =>
        $"rank {r.Index}: {(r.Process.HasExited ? $"exit {r.Process.ExitCode}" : "running")}"));

    public static string Dotnet => Environment.ProcessPath is { } path && Path.GetFileNameWithoutExtension(path) == "dotnet" ? path : "dotnet";
}
