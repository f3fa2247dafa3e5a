using System.Diagnostics;
using Medformer.Runtime.Distributed;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Distributed;

/// <summary>
/// Two ranks on two "nodes" (<see cref="TwoNodes"/>: network namespaces joined by a veth pair): rendezvous and the
/// collectives across it, a stranger on the second node refused, and a rank killed on one node failing the other
/// with one line.
/// </summary>
public sealed class MultiNodeTests(ITestOutputHelper output) : IDisposable
{
    const int Port = 29500;   // each namespace has its own ports
    readonly TwoNodes nodes = new();
    readonly string secret = StoreSecret.Generate();

    public void Dispose() => nodes.Dispose();

    Dictionary<string, string> Rank(int rank) => new()
    {
        ["RANK"] = rank.ToString(), ["WORLD_SIZE"] = "2", ["LOCAL_RANK"] = "0", ["LOCAL_WORLD_SIZE"] = "1",
        ["MASTER_ADDR"] = nodes.FirstAddress, ["MASTER_PORT"] = Port.ToString(), ["MEDFORMER_DIST_TIMEOUT"] = "60",
        [StoreSecret.Variable] = secret,
    };

    [NetnsFact]
    public void TwoNodesReduceAcrossTheVethAndTheStoreRefusesAStranger()
    {
        var first = nodes.StartWorker(nodes.First, 0, Rank(0), "collectives");
        // While rank 0 waits for rank 1, a process on the second node without the secret knocks first.
        var stranger = nodes.StartWorker(nodes.Second, 1, new Dictionary<string, string>(), "stranger", nodes.FirstAddress, Port.ToString());
        var refused = Ranks.Wait([stranger], timeoutSeconds: 90)[0];
        output.WriteLine(refused.Stdout + refused.Stderr);
        Assert.True(refused.ExitCode == 0, refused.Stderr);
        Assert.Contains("ok the store refuses a stranger with a wrong secret", refused.Stdout);

        var results = Ranks.Wait([first, nodes.StartWorker(nodes.Second, 1, Rank(1), "collectives")], timeoutSeconds: 120);
        foreach (var (code, stdout, stderr) in results)
        {
            output.WriteLine(stdout + stderr);
            Assert.True(code == 0, stderr);
            Assert.Contains("ok all_reduce sum 12 MB", stdout);
            Assert.Contains("ok barrier; communication time counted", stdout);
        }
    }

    [NetnsFact]
    public void AStoreWithoutASecretRefusesToStartOnAMultiNodeJob()
    {
        var environment = Rank(0);
        environment.Remove(StoreSecret.Variable);
        var (code, stdout, stderr) = Ranks.Wait([nodes.StartWorker(nodes.First, 0, environment, "collectives")], timeoutSeconds: 60)[0];
        output.WriteLine(stdout + stderr);
        Assert.Equal(1, code);
        Assert.Contains($"set {StoreSecret.Variable}", stderr);
        Assert.Single(stderr.Trim().Split('\n'));
    }

    [NetnsFact]
    public void ARankKilledOnTheOtherNodeFailsTheSurvivorWithOneLine()
    {
        var clock = Stopwatch.StartNew();
        var results = Ranks.Wait([nodes.StartWorker(nodes.First, 0, Rank(0), "die", "1"), nodes.StartWorker(nodes.Second, 1, Rank(1), "die", "1")],
            timeoutSeconds: 90);
        output.WriteLine(results[0].Stdout + results[0].Stderr);
        Assert.NotEqual(0, results[1].ExitCode);
        Assert.True(results[0].ExitCode == 0, results[0].Stderr);
        string failure = Assert.Single(results[0].Stdout.Split('\n'), line => line.StartsWith("failed after"));
        Assert.Contains("rank 1 died", failure);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
    }
}
