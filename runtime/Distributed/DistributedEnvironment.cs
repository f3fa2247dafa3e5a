using System.Collections;
using System.Globalization;
using System.Net;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// Where this process stands in a data-parallel job, read from the environment: torchrun's variables (RANK,
/// WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR, MASTER_PORT), else Slurm's (SLURM_PROCID, SLURM_NTASKS,
/// SLURM_LOCALID, SLURM_NTASKS_PER_NODE; rank 0's host is the first of SLURM_JOB_NODELIST unless MASTER_ADDR is
/// set; MASTER_PORT or 29500). <see cref="Detect"/> gives null for a single process (none set, or a world of 1).
/// </summary>
public sealed record DistributedEnvironment(int Rank, int WorldSize, int LocalRank, int LocalWorldSize, string MasterAddress, int MasterPort, string Source)
{
    public const int DefaultPort = 29500;

    /// <summary>The job this process belongs to, or null when it runs alone.</summary>
    public static DistributedEnvironment? Detect(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        string? Get(string name) => environment[name] as string is { Length: > 0 } value ? value : null;
        int Int(string name, int? fallback = null)
        {
            string? text = Get(name);
            if (text is null) return fallback ??
                throw new ArgumentException($"{name} is not set; a data-parallel process needs RANK, WORLD_SIZE, MASTER_ADDR " +
                    "and MASTER_PORT (torchrun's variables)");
            if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out int value))
                throw new ArgumentException($"{name}={text} is not a non-negative integer");
            return value;
        }

        DistributedEnvironment result;
        if (Get("WORLD_SIZE") is not null || Get("RANK") is not null)
        {
            int world = Int("WORLD_SIZE");
            if (world == 1) return null;
            result = new DistributedEnvironment(Int("RANK"), world, Int("LOCAL_RANK", 0), Int("LOCAL_WORLD_SIZE", world),
                Get("MASTER_ADDR") ??
                    throw new ArgumentException("MASTER_ADDR is not set; a data-parallel process needs RANK, WORLD_SIZE, MASTER_ADDR " +
                        "and MASTER_PORT (torchrun's variables)"),
                Int("MASTER_PORT"), "torchrun");
        }
        else if (Get("SLURM_NTASKS") is not null && Get("SLURM_PROCID") is not null)
        {
            int world = Int("SLURM_NTASKS");
            if (world == 1) return null;
            string nodes = Get("SLURM_JOB_NODELIST") ?? Get("SLURM_NODELIST")
                ?? throw new ArgumentException("SLURM_JOB_NODELIST is not set: cannot tell rank 0's host (set MASTER_ADDR)");
            int perNode = Get("SLURM_NTASKS_PER_NODE") is { } tasks && int.TryParse(tasks.Split('(')[0], CultureInfo.InvariantCulture, out int n) ? n : world;
            result = new DistributedEnvironment(Int("SLURM_PROCID"), world, Int("SLURM_LOCALID", 0), perNode,
                Get("MASTER_ADDR") ?? FirstHost(nodes), Int("MASTER_PORT", DefaultPort), "slurm");
        }
        else return null;
        if (result.Rank >= result.WorldSize)
            throw new ArgumentException($"rank {result.Rank} is not below the world size {result.WorldSize} ({result.Source})");
        if (result.MasterPort is < 1 or > 65535) throw new ArgumentException($"MASTER_PORT {result.MasterPort} is not a TCP port");
        return result;
    }

    /// <summary>The first host of a Slurm node list: "gpu[03-05,9],cpu1" gives "gpu03".</summary>
    public static string FirstHost(string nodeList)
    {
        int bracket = nodeList.IndexOf('['), comma = nodeList.IndexOf(',');
        if (bracket < 0 || (comma >= 0 && comma < bracket)) return (comma < 0 ? nodeList : nodeList[..comma]).Trim();
        string prefix = nodeList[..bracket];
        string first = nodeList[(bracket + 1)..].Split(',', '-', ']')[0];
        return prefix + first;
    }

    /// <summary>Whether rank 0's address is this machine's loopback (every rank on one machine).</summary>
    public bool IsLoopback => MasterAddress is "localhost" || (IPAddress.TryParse(MasterAddress, out var ip) && IPAddress.IsLoopback(ip));
}
