using Medformer.Runtime.Distributed;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Distributed;

/// <summary>The Gloo process group across real processes on 127.0.0.1 (the ranks are <see cref="Worker"/>).</summary>
public sealed class CollectiveTests(ITestOutputHelper output)
{
    [Fact]
    public void CollectivesAgreeAcrossTwoProcesses()
    {
        var results = Ranks.Wait(Ranks.StartWorkers(2, "collectives"));
        foreach (var (code, stdout, stderr) in results)
        {
            output.WriteLine(stdout + stderr);
            Assert.True(code == 0, stderr);
            Assert.Contains("ok all_gather with gradient: backward sums over ranks, this rank's block", stdout);
            Assert.Contains("ok barrier; communication time counted", stdout);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(0)]   // rank 0 hosts the store: its death is seen as the store going away
    public void WhenARankDiesTheOthersFailNamingIt(int victim)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var results = Ranks.Wait(Ranks.StartWorkers(2, "die", victim.ToString()), timeoutSeconds: 90);
        int survivor = 1 - victim;
        output.WriteLine(results[survivor].Stdout + results[survivor].Stderr);
        Assert.NotEqual(0, results[victim].ExitCode);
        Assert.True(results[survivor].ExitCode == 0, results[survivor].Stderr);
        Assert.Contains($"ok the error names rank {victim}", results[survivor].Stdout);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(60), $"took {clock.Elapsed}");
    }

    [Fact]
    public void TheEnvironmentFollowsTorchrunThenSlurm()
    {
        Assert.Null(DistributedEnvironment.Detect(new Dictionary<string, string>()));
        Assert.Null(DistributedEnvironment.Detect(new Dictionary<string, string> { ["WORLD_SIZE"] = "1", ["RANK"] = "0" }));
        var torchrun = DistributedEnvironment.Detect(new Dictionary<string, string>
        {
            ["RANK"] = "3", ["WORLD_SIZE"] = "4", ["LOCAL_RANK"] = "1", ["LOCAL_WORLD_SIZE"] = "2", ["MASTER_ADDR"] = "node7", ["MASTER_PORT"] = "1234",
            ["SLURM_PROCID"] = "0", ["SLURM_NTASKS"] = "8",
        });
        Assert.Equal(new DistributedEnvironment(3, 4, 1, 2, "node7", 1234, "torchrun"), torchrun);
        var slurm = DistributedEnvironment.Detect(new Dictionary<string, string>
        {
            ["SLURM_PROCID"] = "5", ["SLURM_NTASKS"] = "8", ["SLURM_LOCALID"] = "1", ["SLURM_NTASKS_PER_NODE"] = "4(x2)",
                ["SLURM_JOB_NODELIST"] = "gpu[07-08],cpu1",
        });
        Assert.Equal(new DistributedEnvironment(5, 8, 1, 4, "gpu07", DistributedEnvironment.DefaultPort, "slurm"), slurm);
        Assert.Equal("cpu1", DistributedEnvironment.FirstHost("cpu1,gpu[1-2]"));
        Assert.Equal("n001", DistributedEnvironment.FirstHost("n[001,004-005]"));
        var missing = Assert.Throws<ArgumentException>(() => DistributedEnvironment.Detect(new Dictionary<string, string> { ["RANK"] = "0",
            ["WORLD_SIZE"] = "2", ["MASTER_PORT"] = "1" }));
        Assert.Contains("MASTER_ADDR", missing.Message);
        Assert.Throws<ArgumentException>(() => DistributedEnvironment.Detect(new Dictionary<string, string> { ["RANK"] = "2", ["WORLD_SIZE"] = "2",
            ["MASTER_ADDR"] = "a", ["MASTER_PORT"] = "1" }));
    }
}
