using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Medformer.Runtime.Distributed;

/// <summary>What <see cref="LocalLauncher"/> starts: <paramref name="ProcessesPerNode"/> ranks on this node of <paramref name="Nodes"/>.</summary>
public sealed record LaunchOptions(int ProcessesPerNode, int Nodes = 1, int NodeRank = 0, string MasterAddress = "127.0.0.1",
    int MasterPort = DistributedEnvironment.DefaultPort)
{
    public int WorldSize => ProcessesPerNode * Nodes;

    public void Validate()
    {
        if (ProcessesPerNode < 1) throw new ArgumentException($"--nproc-per-node {ProcessesPerNode} must be at least 1");
        if (Nodes < 1) throw new ArgumentException($"--nnodes {Nodes} must be at least 1");
        if (NodeRank < 0 || NodeRank >= Nodes) throw new ArgumentException($"--node-rank {NodeRank} must be in [0, --nnodes {Nodes})");
        if (MasterPort is < 1 or > 65535) throw new ArgumentException($"--master-port {MasterPort} is not a TCP port");
        if (string.IsNullOrWhiteSpace(MasterAddress)) throw new ArgumentException("--master-addr is empty");
    }
}

/// <summary>
/// torchrun's local part: starts this node's ranks as child processes of one program with RANK, WORLD_SIZE,
/// LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set, and the store's secret (<see cref="StoreSecret"/>:
/// a random one for a one-node job, the user's for several nodes) (their output goes to ours), forwards SIGINT and
/// SIGTERM to them, and waits. When a rank exits with a failure, the others get a few seconds to report what they
/// saw, then SIGTERM, then SIGKILL; the launcher exits with the first failure's status.
/// </summary>
public static class LocalLauncher
{
    /// <summary>How long the other ranks may take to stop by themselves after one failed, and after SIGTERM.</summary>
    public static readonly TimeSpan Grace = TimeSpan.FromSeconds(5), TermGrace = TimeSpan.FromSeconds(10);

    public static int Run(string program, IReadOnlyList<string> arguments, LaunchOptions options, Action<string> notice)
    {
        options.Validate();
        // The ranks prove this to rank 0's store. One node: a fresh random secret (unless the user gave one). Several:
        // every node's launcher must pass the same, so it comes from the user; check it here, before any rank starts.
        string? secret = null;
        try
        {
            if (StoreSecret.IsConfigured() || options.Nodes > 1) StoreSecret.Resolve(loopback: false);   // without one, throws saying how to set one
            else secret = StoreSecret.Generate();
        }
        catch (DistributedException e)
        {
            throw new ArgumentException(e.Message, e);   // a launch option the user must fix, as a bad flag is
        }
        var children = new List<(int Rank, Process Process)>();
        int signalled = 0;
        void Forward(PosixSignalContext context)
        {
            context.Cancel = true;   // the launcher stays to collect the ranks' statuses
            Interlocked.Exchange(ref signalled, (int)context.Signal == (int)PosixSignal.SIGINT ? 2 : 15);
            lock (children)
                foreach (var (_, process) in children) Signal(process, context.Signal == PosixSignal.SIGINT ? 2 : 15);
        }
        using var onInterrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Forward);
        using var onTerminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Forward);
        try
        {
            for (int local = 0; local < options.ProcessesPerNode; local++)
            {
                int rank = options.NodeRank * options.ProcessesPerNode + local;
                var start = new ProcessStartInfo(program) { UseShellExecute = false };
                foreach (string argument in arguments) start.ArgumentList.Add(argument);
                start.Environment["RANK"] = rank.ToString();
                start.Environment["LOCAL_RANK"] = local.ToString();
                start.Environment["WORLD_SIZE"] = options.WorldSize.ToString();
                start.Environment["LOCAL_WORLD_SIZE"] = options.ProcessesPerNode.ToString();
                start.Environment["MASTER_ADDR"] = options.MasterAddress;
                start.Environment["MASTER_PORT"] = options.MasterPort.ToString();
                if (secret is not null) start.Environment[StoreSecret.Variable] = secret;
                lock (children) children.Add((rank, Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}")));
            }
            return Wait(children, notice, () => signalled != 0);
        }
        finally
        {
            foreach (var (_, process) in children)
            {
                if (!process.HasExited) process.Kill();
                process.Dispose();
            }
        }
    }

    static int Wait(List<(int Rank, Process Process)> children, Action<string> notice, Func<bool> interrupted)
    {
        (int Rank, int Status)? failure = null;
        DateTime? termAt = null, killAt = null;
        while (true)
        {
            var running = children.Where(c => !c.Process.HasExited).ToList();
            if (failure is null && children.FirstOrDefault(c => c.Process.HasExited && c.Process.ExitCode != 0) is { Process: not null } failed)
            {
                failure = (failed.Rank, failed.Process.ExitCode);
                if (!interrupted())
                    notice($"rank {failed.Rank} exited with status " +
                        $"{Describe(failed.Process.ExitCode)}{(running.Count > 0 ? "; stopping the other ranks" : "")}");
                termAt = DateTime.UtcNow + (interrupted() ? TermGrace : Grace);
            }
            if (running.Count == 0) return failure?.Status ?? 0;
            if (interrupted() && termAt is null) termAt = DateTime.UtcNow + TimeSpan.FromSeconds(60);  // a step may be long; then stop waiting
            if (termAt is { } t && DateTime.UtcNow >= t && killAt is null)
            {
                foreach (var (_, process) in running) Signal(process, 15);
                killAt = DateTime.UtcNow + TermGrace;
            }
            if (killAt is { } k && DateTime.UtcNow >= k)
                foreach (var (_, process) in running) process.Kill();
            Thread.Sleep(50);
        }
    }

    static string Describe(int status) => status > 128 && status < 160 ? $"{status} (signal {status - 128})" : status.ToString();

    static void Signal(Process process, int signal)
    {
        try
        {
            if (!process.HasExited) _ = Kill(process.Id, signal);
        }
        catch (InvalidOperationException)
        {
            // exited meanwhile
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    static extern int Kill(int pid, int signal);
}
