using Medformer.Datasets.Corpora;
using Medformer.Eval;
using Medformer.Eval.Metrics;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Medformer.Heads;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Eval;

/// <summary>
/// Protocols with dense heads: the seed talk's restoration table (Gaussian filter and fine-tuned rows, restoration
/// scores) on synthetic PET studies larger than the training crop, segmentation on the phantom's masks, and the
/// errors for data and heads that do not fit.
/// </summary>
public sealed class DenseProtocolTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dense-protocol-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    [Fact]
    public void RestorationTableHasTheGaussianRowAndScoresByCaseAtFullSize()
    {
        // 12 studies of 20³ → 2 test, 1 validation, 9 training cases; the halves protocol trains on 5, chooses on 4;
        // crops of 16³, so validation and test cases are scored by 8 sliding windows each.
        using var data = EvaluationData.PetCt(SyntheticPet.Write(Path.Combine(root, "pet"), 12, 20, seed: 11));
        Assert.Equal((9L, 2L), (data.Train.Count, data.Test.Count));
        var spec = new ProtocolSpec(ProtocolKind.Halves, [1.0], Seeds: 1);
        var settings = new FineTuneSettings
        {
            FineTune = FineTuneSettings.Recipe with { MaxSteps = 24, LearningRate = 3e-3, BatchSize = 4, Precision = Precision.Fp32, Workers = 0, Roi = [16, 16,
                16] },
            Evaluations = 2,
        };
        var cells = new DenseCells(data, "restoration:l1=0,mse=1", settings, Config);
        Assert.Equal(["score_mse", "score_ssim", "mse", "ssim", "psnr"], cells.Metrics.Select(m => m.Name));
        Initialisation[] inits = [Initialisation.GaussianFilter, Initialisation.Random];
        var results = ProtocolRunner.Run(spec, data, inits, cells, new ResultStore(Path.Combine(root, "results"), ProtocolRunner.Settings(spec, cells)),
            output.WriteLine);

        var gaussian = results.Single(r => r.Init == "Gaussian filter");
        var tuned = results.Single(r => r.Init == "random init");
        Assert.Equal(0, gaussian.TrainCount);
        Assert.Equal(5, tuned.TrainCount);
        Assert.Equal("mse", tuned.SelectionMetric);
        Assert.Contains(tuned.SelectedStep, tuned.Validation.Select(p => p.Step));
        // The Gaussian row by hand: σ chosen on the same validation cases, each test case scored, the scores averaged.
        var plan = spec.Plan(data, Initialisation.GaussianFilter, gaussian.Key);
        var fit = GaussianFilterBaseline.Fit(new SubsetCorpus(plan.Validation, [.. plan.ValidationIndices.Select(i => (long)i)]));
        Assert.True(fit.Best.Sigma > 0);
        var byHand = new List<double>();
        for (int i = 0; i < data.Test.Count; i++)
        {
            using var sample = data.Test.Get(i);
            using var restored = fit.Best.Restore(sample.Image);
            byHand.Add(RestorationScore.Mse(restored, sample.Image, sample.Target!));
        }
        Assert.Equal(byHand.Average(), gaussian.Metrics["score_mse"], 6);
        Assert.InRange(gaussian.Metrics["score_mse"], 10, 100);              // smoothing removes part of the Poisson noise
        Assert.InRange(gaussian.Metrics["score_ssim"], -100, 100);
        foreach (string metric in new[] { "score_mse", "score_ssim", "mse", "ssim", "psnr" })
            Assert.True(double.IsFinite(tuned.Metrics[metric]), $"{metric} {tuned.Metrics[metric]}");
        output.WriteLine($"Gaussian σ {fit.Best.Sigma}: score {gaussian.Metrics["score_mse"]:F1}; fine-tuned 24 steps: {tuned.Metrics["score_mse"]:F1}");

        var report = EvaluationReport.Write(Path.Combine(root, "report"), "pet", results, cells.Metrics, [.. inits.Select(i => i.Name)], spec.Fractions,
            ProtocolRunner.Settings(spec, cells));
        string markdown = File.ReadAllText(report.Markdown);
        output.WriteLine(markdown);
        Assert.Contains("| Gaussian filter | ", markdown);
        Assert.Contains("Restoration score, MSE (%)", markdown);
    }

    [Fact]
    public void SegmentationOnThePhantomMasksReportsDiceIouAndHd95()
    {
        using var data = EvaluationData.Phantom(new PhantomSpec(Dimensionality.Image, 16, 60, 12, 12), Path.Combine(Repo.TestHome, "phantom"));
        Assert.Equal(2, data.MaskClasses);
        var spec = new ProtocolSpec(ProtocolKind.Fractions, [0.5], Seeds: 1);
        var settings = new FineTuneSettings
        {
            FineTune = FineTuneSettings.Recipe with { MaxSteps = 8, LearningRate = 3e-3, BatchSize = 16, Precision = Precision.Fp32, Workers = 0 },
            Evaluations = 2,
        };
        var cells = new DenseCells(data, "segmentation", settings, Config);
        var result = ProtocolRunner.Run(spec, data, [Initialisation.Random], cells, new ResultStore(Path.Combine(root, "seg"), ProtocolRunner.Settings(spec,
            cells)), output.WriteLine).Single();
        Assert.Equal("dice", result.SelectionMetric);
        Assert.InRange(result.Metrics["dice"], 0, 1);
        Assert.InRange(result.Metrics["iou"], 0, result.Metrics["dice"] + 1e-9);   // IoU ≤ Dice case by case
        Assert.True(!(result.Metrics["hd95"] < 0), $"hd95 {result.Metrics["hd95"]}");
    }

    [Fact]
    public void DataAndHeadsThatDoNotFitAreRefused()
    {
        using var pet = EvaluationData.PetCt(SyntheticPet.Write(Path.Combine(root, "pet"), 4, 12, seed: 1));
        var settings = new FineTuneSettings { FineTune = FineTuneSettings.Recipe with { MaxSteps = 2 } };
        Assert.Contains("no label maps", Assert.Throws<ArgumentException>(() => new DenseCells(pet, "segmentation", settings, Config)).Message);
        Assert.Contains("no class labels", Assert.Throws<ArgumentException>(() => new ClassificationCells(pet, settings, Config)).Message);
        Assert.Contains("dice", Assert.Throws<ArgumentException>(() => new DenseCells(pet, "restoration", settings with { Selection = "dice" },
            Config)).Message);
        Assert.Contains("unknown setting 'sigma'", Assert.Throws<ArgumentException>(() => new DenseCells(pet, "restoration:sigma=2", settings,
            Config)).Message);
        using var phantom = EvaluationData.Phantom(new PhantomSpec(Dimensionality.Image, 16, 60, 12, 12), Path.Combine(Repo.TestHome, "phantom"));
        Assert.Contains("no target images", Assert.Throws<ArgumentException>(() => new DenseCells(phantom, "restoration", settings, Config)).Message);
        var options = new EvaluationOptions(ProtocolSpec.MedMnistFractions, "phantom:2d", ["gaussian"], root, settings, Head: "segmentation");
        Assert.Contains("--init gaussian", Assert.Throws<ArgumentException>(() => EvaluationJob.Validate(options)).Message);
        Assert.Contains("--task", Assert.Throws<ArgumentException>(() => EvaluationJob.Validate(options with { Task = "petct",
            Inits = ["random"] })).Message);
    }
}
