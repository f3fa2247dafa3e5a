using Medformer.Pretrain;
using Medformer.Training;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Pretrain;

/// <summary>
/// What `./medformer pretrain` with no arguments promises: every objective of the default mix ends below its chance
/// loss (measured by the objective on the run's first batch), so none is dead weight in the main job.
/// </summary>
[Collection(PretrainedPhantomCollection.Name)]
public sealed class DefaultJobTests(PretrainedPhantom pretrained, ITestOutputHelper output)
{
    [Fact]
    public void EveryObjectiveOfTheDefaultMixEndsBelowItsChanceLoss()
    {
        foreach (string line in pretrained.Log) output.WriteLine(line);
        var outcomes = pretrained.Result.Objectives;
        foreach (var o in outcomes) output.WriteLine($"{o.Name}: {o.FinalLoss:F4} (chance {o.ChanceLoss:F4})");
        Assert.Equal(new RunConfig().Objectives.Keys.Order(), outcomes.Select(o => o.Name).Order());
        foreach (var o in outcomes)
        {
            Assert.True(o.ChanceLoss is not null, $"{o.Name} has no chance loss to be judged by");
            Assert.True(o.FinalLoss < 0.9 * o.ChanceLoss!.Value, $"{o.Name} ended at {o.FinalLoss:F4}, not clearly below its chance loss {o.ChanceLoss:F4}");
        }
    }

    [Fact]
    public void AnObjectiveThatLearnedNothingIsCalledSo()
    {
        var history = new List<TrainerLog>
        {
            Log(100, new() { ["rotation"] = 1.3861, ["simclr"] = 3.0 }),
            Log(200, new() { ["rotation"] = 1.3866, ["simclr"] = 2.0 }),
        };
        var outcomes = ObjectiveOutcome.Of(history, new Dictionary<string, double> { ["rotation"] = Math.Log(4), ["simclr"] = Math.Log(127) });
        Assert.True(outcomes.Single(o => o.Name == "rotation").AtChance);
        var simclr = outcomes.Single(o => o.Name == "simclr");
        Assert.False(simclr.AtChance);
        Assert.Equal(2.0, simclr.FinalLoss);  // the last tenth of 200 steps holds only the last log line
    }

    static TrainerLog Log(long step, Dictionary<string, double> parts) =>
        new(step, 200, parts.Values.Sum(), parts, 1e-3, 1, 100, TimeSpan.Zero, TimeSpan.Zero, 0);
}
