using System.Reflection;
using Medformer.Eval.Protocols;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Xunit;

namespace Medformer.Tests.Eval;

/// <summary>One trainer settings type: fine-tuning and evaluation take TrainerOptions' defaults but for the departures they document.</summary>
public sealed class TrainerSettingsTests
{
    static readonly PropertyInfo[] Shared = typeof(TrainerOptions).GetProperties(BindingFlags.Public | BindingFlags.Instance)
        .Where(p => p.Name != "EqualityContract").ToArray();

    static IEnumerable<string> Departures(TrainerOptions baseline, TrainerOptions recipe) =>
        Shared.Where(p => !Equals(p.GetValue(baseline), p.GetValue(recipe))).Select(p => p.Name).Order();

    [Fact]
    public void FineTuningDepartsFromTheTrainersDefaultsInWarmupAndLogCadenceOnly()
    {
        var options = new FineTuneOptions();
        Assert.IsAssignableFrom<TrainerOptions>(options);
        Assert.Equal(["LogEvery", "WarmupSteps"], Departures(new TrainerOptions(), options));
        Assert.Equal((20L, 50), (options.WarmupSteps, options.LogEvery));
        Assert.Equal(options.LearningRate / 100, options.MinLearningRateOrDefault);
    }

    [Fact]
    public void EvaluationCellsDepartFromFineTuningInStepsAndBatchOnly()
    {
        Assert.Equal(["BatchSize", "MaxSteps"], Departures(new FineTuneOptions(), FineTuneSettings.Recipe));
        Assert.Equal((300L, 32), (FineTuneSettings.Recipe.MaxSteps, FineTuneSettings.Recipe.BatchSize));
        Assert.Equal(FineTuneSettings.Recipe, new FineTuneSettings().FineTune);
    }

    [Fact]
    public void TheTrainerRunsFineTuningsSettingsWithTheWarmupAndLogCappedByTheRun()
    {
        var options = new FineTuneOptions { MaxSteps = 30, LearningRate = 2e-3, BatchSize = 8, Workers = 0 };
        var trainer = options.Trainer;
        Assert.IsType<TrainerOptions>(trainer);
        Assert.Equal((15L, 30, 2e-3, 2e-5), (trainer.WarmupSteps, trainer.LogEvery, trainer.LearningRate, trainer.MinLearningRateOrDefault));
        Assert.Equal((8, 0), (trainer.BatchSize, trainer.Workers));
    }

    [Fact]
    public void SharedSettingsAreCheckedInOneWording()
    {
        Assert.Equal("batch_size 0 must be at least 1",
            Assert.Throws<ArgumentException>(() => new FineTuneSettings { FineTune = FineTuneSettings.Recipe with { BatchSize = 0 } }.Validate()).Message);
        Assert.Equal("max_steps 0 must be positive", Assert.Throws<ArgumentException>(() => new FineTuneOptions { MaxSteps = 0 }.Validate()).Message);
        Assert.Equal("min_lr 0.5 must be in [0, lr]", Assert.Throws<ArgumentException>(() => new TrainerOptions { MinLearningRate = 0.5 }.Validate()).Message);
    }
}
