using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Eval;
using Medformer.Pretrain;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Pretrain;

/// <summary>
/// Pretraining must pay: on the embedded phantom corpus, a linear probe on the encoder after a short pretraining run
/// beats the same probe on the same encoder at its random initialisation.
/// </summary>
public sealed class PretrainingPaysTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-pays-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static long Steps => Environment.GetEnvironmentVariable("MEDFORMER_FULL_TESTS") == "1" ? 1500 : 300;

    [Fact]
    public void ALinearProbeOnThePretrainedEncoderBeatsARandomOne()
    {
        string home = Environment.GetEnvironmentVariable("MEDFORMER_HOME") ?? "";
        Environment.SetEnvironmentVariable("MEDFORMER_HOME", Repo.TestHome);
        try
        {
            var config = new RunConfig { Seed = 1, LogEvery = 50, CheckpointEvery = 0 };
            config.Schedule.MaxSteps = Steps;
            config.Schedule.WarmupSteps = 30;
            var result = PretrainJob.Run(config, Path.Combine(root, "run"), log: l => output.WriteLine($"step {l.Step} loss {l.Loss:F4} {l.SamplesPerSecond:F0}/s"));
            output.WriteLine($"pretrained {result.Training.Steps} steps in {result.Training.Elapsed.TotalSeconds:F0} s");

            using var pretrained = Checkpoint.Load(result.Training.ModelDirectory);
            Seeding.SeedEverything(1);
            using var random = new Medformer(pretrained.Config);
            var (mine, baseline) = (Probe(pretrained), Probe(random));
            output.WriteLine($"linear probe, phantom 2D test accuracy: pretrained {mine.TestAccuracy:P1}, random {baseline.TestAccuracy:P1}");
            Assert.True(mine.TestAccuracy > baseline.TestAccuracy + 0.05,
                $"pretrained {mine.TestAccuracy:P1} vs random {baseline.TestAccuracy:P1}: pretraining did not pay");
        }
        finally
        {
            Environment.SetEnvironmentVariable("MEDFORMER_HOME", home.Length == 0 ? null : home);
        }
    }

    static ProbeResult Probe(Medformer model)
    {
        using var train = Phantom.Open(PhantomSpec.Default2d, "train");
        using var test = Phantom.Open(PhantomSpec.Default2d, "test");
        var options = new LoaderOptions(250, Workers: 1);
        var (x, y) = LinearProbe.Features(model, new DataLoader([new LoaderSource(train)], options).Pass());
        var (xt, yt) = LinearProbe.Features(model, new DataLoader([new LoaderSource(test)], options).Pass());
        using (x) using (y) using (xt) using (yt)
            return LinearProbe.Fit(x, y, xt, yt, classes: 10);
    }
}
