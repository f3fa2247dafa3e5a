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
/// Pretraining pays on the embedded corpus: after the default job's objective mix, a linear probe on the frozen
/// encoder's latents classifies the phantom's test split better, by a margin, than the same probe on the same
/// encoder at its random initialisation. Minutes on a CPU.
/// </summary>
public sealed class PretrainingPaysTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-pays-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void AProbeOnThePretrainedEncoderBeatsARandomEncoder()
    {
        long steps = long.Parse(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_TEST_STEPS") ?? "400");
        var config = new RunConfig { LogEvery = 100, CheckpointEvery = 0 };
        config.Schedule.MaxSteps = steps;
        config.Batch.Workers = 2;
        var result = PretrainJob.Run(config, root, log: entry => output.WriteLine($"step {entry.Step}: {entry.Loss:F4} {string.Join(", ", entry.Parts.Select(p => $"{p.Key} {p.Value:F3}"))}"));

        using var train = Phantom.Open(PhantomSpec.Default2d, "train");
        using var test = Phantom.Open(PhantomSpec.Default2d, "test");
        double Probe(Medformer model, bool flatten)
        {
            var (trainX, trainY) = LinearProbe.Features(model, Pass(train), flatten: flatten);
            var (testX, testY) = LinearProbe.Features(model, Pass(test), flatten: flatten);
            using (trainX) using (trainY) using (testX) using (testY)
                return LinearProbe.Fit(trainX, trainY, testX, testY, PhantomGenerator.Classes, weightDecay: 1e-2).TestAccuracy;
        }
        using var pretrained = Checkpoint.Load(result.Training.ModelDirectory);
        Seeding.SeedEverything(config.Seed);
        using var random = new Medformer(MedformerConfig.Resolve(config.Model));
        foreach (bool flatten in new[] { false, true })
            output.WriteLine($"probe ({(flatten ? "flattened" : "mean")} latents): pretrained {Probe(pretrained, flatten):P1}, random {Probe(random, flatten):P1}");
        double gain = Probe(pretrained, true) - Probe(random, true);
        Assert.True(gain > 0.05, $"probe gain {gain:P1}");
    }

    static IEnumerable<Batch> Pass(ICorpus corpus) => new DataLoader([new LoaderSource(corpus)], new LoaderOptions(256, Workers: 1)).Pass();
}
