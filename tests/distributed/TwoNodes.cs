using System.Diagnostics;

namespace Medformer.Tests.Distributed;

/// <summary>
/// Two "machines" on this one: network namespaces joined by a veth pair, with addresses 10.27.N.1 and 10.27.N.2
/// that exist only inside them (no route or address outside changes). Names carry the process id and a counter, so
/// parallel runs do not collide; Dispose deletes both namespaces, which removes the veth pair.
/// </summary>
sealed class TwoNodes : IDisposable
{
    static int counter;
    readonly List<Process> started = [];

    public static string? Ip => new[] { "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip" }.FirstOrDefault(File.Exists);

    public TwoNodes()
    {
        int n = Interlocked.Increment(ref counter);
        string id = $"{Environment.ProcessId % 100000}x{n}";
        First = $"mf{id}a";
        Second = $"mf{id}b";
        int subnet = (Environment.ProcessId + n) % 250 + 1;
        FirstAddress = $"10.27.{subnet}.1";
        SecondAddress = $"10.27.{subnet}.2";
        try
        {
            Run("netns", "add", First);
            Run("netns", "add", Second);
            // veth names: at most 15 characters.
            Run("link", "add", "va" + id, "netns", First, "type", "veth", "peer", "name", "vb" + id, "netns", Second);
            Run("-n", First, "addr", "add", FirstAddress + "/24", "dev", "va" + id);
            Run("-n", Second, "addr", "add", SecondAddress + "/24", "dev", "vb" + id);
            foreach (var (space, device) in new[] { (First, "va" + id), (Second, "vb" + id), (First, "lo"), (Second, "lo") })
                Run("-n", space, "link", "set", device, "up");
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public string First { get; }
    public string Second { get; }
    public string FirstAddress { get; }
    public string SecondAddress { get; }

    /// <summary>The test assembly's <see cref="Worker"/> inside <paramref name="space"/> with <paramref name="environment"/> (torchrun's variables among
    /// them).</summary>
    public Ranks.Rank StartWorker(string space, int index, IReadOnlyDictionary<string, string> environment, params string[] args)
    {
        var start = new ProcessStartInfo(Ip!) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = Repo.Root };
        foreach (string arg in (string[])["netns", "exec", space, Ranks.Dotnet, "exec", typeof(Worker).Assembly.Location,
            "worker", .. args]) start.ArgumentList.Add(arg);
        foreach (string key in new[] { "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "MEDFORMER_STORE_SECRET",
            "MEDFORMER_STORE_SECRET_FILE" })
            start.Environment.Remove(key);
        foreach (var (key, value) in environment) start.Environment[key] = value;
        var process = Process.Start(start) ?? throw new InvalidOperationException("could not start ip netns exec");
        lock (started) started.Add(process);
        return new Ranks.Rank(index, process, process.StandardOutput.ReadToEndAsync(), process.StandardError.ReadToEndAsync());
    }

    static void Run(params string[] args)
    {
        var start = new ProcessStartInfo(Ip!) { RedirectStandardError = true, RedirectStandardOutput = true };
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start)!;
        string error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0) throw new InvalidOperationException($"ip {string.Join(' ', args)}: {error.Trim()}");
    }

    public void Dispose()
    {
        lock (started)
            foreach (var process in started)
            {
                if (!process.HasExited) process.Kill(entireProcessTree: true);
                process.Dispose();
            }
        foreach (string space in new[] { First, Second })
        {
            try
            {
                Run("netns", "del", space);
            }
            catch (InvalidOperationException)
            {
                // not created
            }
        }
    }
}
