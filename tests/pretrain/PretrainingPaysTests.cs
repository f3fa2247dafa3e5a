using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Eval;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Pretrain;

/// <summary>
/// Pretraining pays on the embedded corpus: after the default job's objective mix, a linear probe on the frozen
/// encoder's latents classifies the phantom's test split better, by a margin, than the same probe on the same
/// encoder at its random initialisation. Minutes on a CPU (the pretraining is shared with the heads' test).
/// </summary>
[Collection(PretrainedPhantomCollection.Name)]
public sealed class PretrainingPaysTests(PretrainedPhantom pretrained, ITestOutputHelper output)
{
    [Fact]
    public void AProbeOnThePretrainedEncoderBeatsARandomEncoder()
    {
        foreach (string line in pretrained.Log) output.WriteLine(line);
        using var train = Phantom.Open(PhantomSpec.Default2d, "train");
        using var test = Phantom.Open(PhantomSpec.Default2d, "test");
        double Probe(MedformerModel model, bool flatten)
        {
            var (trainX, trainY) = LinearProbe.Features(model, Pass(train), flatten: flatten);
            var (testX, testY) = LinearProbe.Features(model, Pass(test), flatten: flatten);
            using (trainX) using (trainY) using (testX) using (testY)
                return LinearProbe.Fit(trainX, trainY, testX, testY, PhantomGenerator.Classes, weightDecay: 1e-2).TestAccuracy;
        }
        using var model = Checkpoint.Load(pretrained.ModelDirectory);
        Seeding.SeedEverything(pretrained.Config.Seed);
        using var random = new MedformerModel(MedformerConfig.Resolve(pretrained.Config.Model));
        foreach (bool flatten in new[] { false, true })
            output.WriteLine($"probe ({(flatten ? "flattened" : "mean")} latents): pretrained {Probe(model, flatten):P1}, random {Probe(random, flatten):P1}");
        double gain = Probe(model, true) - Probe(random, true);
        Assert.True(gain > 0.05, $"probe gain {gain:P1}");
    }

    static IEnumerable<Batch> Pass(ICorpus corpus) => new DataLoader([new LoaderSource(corpus)], new LoaderOptions(256, Workers: 1)).Pass();
}
