using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Datasets.Layouts;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using Medformer.Tests.Heads;
using Medformer.Tracking.Interop;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Tracking;

/// <summary>
/// <c>medformer export</c> of models fine-tuned with the dense heads (segmentation 2D and 3D, restoration,
/// super-resolution, translation): the exported medformer.py's FineTuned, run on Debian's PyTorch 1.13 through the
/// README's own lines, returns what <c>medformer predict</c> returns (masks, images), whole and by sliding windows of
/// the training crop, within 1e-4; with one head weight perturbed in the export it does not.
/// </summary>
public sealed class InteropDenseHeadTests(ITestOutputHelper output) : IDisposable
{
    const double Tolerance = 1e-4;

    readonly string folder = Directory.CreateTempSubdirectory("medformer-interop-dense-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    static MedformerConfig Config => SegmentationHeadTests.Config;

    static string PhantomFolder => Path.Combine(Repo.TestHome, "phantom-interop");

    Repo.Result Cli(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, args, folder, 300, new Dictionary<string, string> { ["MEDFORMER_HOME"] = Path.Combine(folder, "home"),
            ["MLFLOW_TRACKING_URI"] = "none" });
        output.WriteLine($"medformer {string.Join(' ', args)} -> {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result;
    }

    /// <summary>Saves the fine-tuned model and exports it; the export folder.</summary>
    string Export(FineTuner tuner, string name, bool torchSave = false)
    {
        string source = Path.Combine(folder, name), exported = Path.Combine(folder, name + "-pt");
        tuner.Save(source);
        var result = Cli(["export", source, "--out", exported, .. torchSave ? new[] { "--format", "pt" } : []]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains($"with its {tuner.Head.Kind} head", result.Stdout);
        Assert.DoesNotContain("note:", result.Stdout);
        return exported;
    }

    /// <summary>
    /// The head's raw outputs (logits, images) for images [N,C,…], as FineTuner.PredictWhole computes them before the
    /// head's last step: whole where the images have the training input's shape, else blended over sliding windows
    /// of it, each image with its own banks (here predict's default, "other").
    /// </summary>
    static Tensor RawOutputs(FineTuner tuner, Tensor images)
    {
        tuner.Model.eval();
        tuner.Head.eval();
        using var noGrad = no_grad();
        using var scope = NewDisposeScope();
        var dims = MedformerModel.DimensionalityOf(images);
        Tensor Run(Tensor x)
        {
            var metas = Enumerable.Range(0, (int)x.shape[0]).Select(i => new SampleMeta("input", $"input[{i}]", i, "other", "other", dims, [], [])).ToList();
            var latents = tuner.Model.forward(x, [.. metas.Select(m => new LatentKey(m.Organ, m.Modality, tuner.Head.Task))]);
            return tuner.Head.call(new HeadInput(tuner.Model, latents, x.shape, metas, x)).to(ScalarType.Float32);
        }
        var roi = tuner.InputShape![1..];
        if (images.shape[2..].SequenceEqual(roi)) return scope.MoveToOuter(Run(images));
        var parts = Enumerable.Range(0, (int)images.shape[0]).Select(i => SlidingWindow.Infer(images.narrow(0, i, 1), roi, Run)).ToArray();
        return scope.MoveToOuter(cat(parts));
    }

    /// <summary>Runs tests/reference/export_dense_check.py on x, our prediction y and raw outputs z; its JSON report.</summary>
    JsonElement Check(string exported, Tensor x, Tensor y, Tensor z)
    {
        Safetensors.Save(new Dictionary<string, Tensor> { ["x"] = x, ["y"] = y, ["z"] = z }, Path.Combine(exported, "io.safetensors"));
        var check = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "export_dense_check.py"), exported]);
        output.WriteLine(check.Stdout + check.Stderr);
        Assert.True(check.ExitCode == 0, check.Stderr);
        return JsonDocument.Parse(check.Stdout).RootElement.Clone();
    }

    /// <summary>Asserts the README's prediction and FineTuned's raw outputs are ours within the tolerance.</summary>
    static void AssertAgrees(JsonElement report, Tensor y, Tensor z, bool windows)
    {
        string text = report.ToString();
        Assert.Equal(y.shape, report.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(z.shape, report.GetProperty("outputs_shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal(windows, report.GetProperty("windows").GetBoolean());
        Assert.True(report.GetProperty("outputs_error").GetDouble() < Tolerance, text);
        Assert.True(report.GetProperty("outputs_scale").GetDouble() > 0, text);
        if (report.GetProperty("variable").GetString() == "mask")
        {
            Assert.Equal("torch.int64", report.GetProperty("dtype").GetString());
            Assert.Equal(0, report.GetProperty("mask_mismatches_beyond_ties").GetInt32());
            Assert.True(report.GetProperty("probabilities_error").GetDouble() < Tolerance, text);
        }
        else
            Assert.True(report.GetProperty("readme_error").GetDouble() < Tolerance, text);
    }

    /// <summary>One weight of the exported head moved by 0.1: the twin must then disagree with us by far more than the tolerance.</summary>
    void AssertAPerturbedHeadWeightIsCaught(string exported, Tensor x, Tensor y, Tensor z)
    {
        string path = Path.Combine(exported, PyTorchExport.HeadWeights);
        var weights = Safetensors.Load(path);
        try
        {
            using (no_grad()) weights["readout.fc.weight"][0, 0].add_(0.1);
            Safetensors.Save(weights, path);
        }
        finally
        {
            foreach (var w in weights.Values) w.Dispose();
        }
        var report = Check(exported, x, y, z);
        Assert.True(report.GetProperty("outputs_error").GetDouble() > 10 * Tolerance, $"a perturbed head weight went unnoticed: {report}");
    }

    static SampleMeta[] Metas(Tensor images) => [.. Enumerable.Range(0, (int)images.shape[0])
        .Select(i => new SampleMeta("input", $"input[{i}]", i, "other", "other", MedformerModel.DimensionalityOf(images), [], []))];

    [Fact]
    public void ASegmentationHeadIn2dExportsAndPredictsAsMedformerPredictWholeAndBySlidingWindows()
    {
        var spec = new PhantomSpec(Dimensionality.Image, 28, 32, 2, 4);
        using var train = Phantom.Open(spec, "train", PhantomFolder);
        using var test = Phantom.Open(spec, "test", PhantomFolder);
        Seeding.SeedEverything(11);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2));
        tuner.Fit(train, new FineTuneOptions { MaxSteps = 6, BatchSize = 4, WarmupSteps = 1, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 3,
            Roi = [16, 16] });
        Assert.Equal([1L, 16, 16], tuner.InputShape!);
        string exported = Export(tuner, "seg2d");

        using var scope = NewDisposeScope();
        var samples = Enumerable.Range(0, 2).Select(i => test.Get(i)).ToList();
        var x = stack(samples.Select(s => s.Image));                                    // [2,1,28,28]: windows of 16²
        foreach (var s in samples) s.Dispose();

        // medformer predict itself on one image as NIfTI: the mask it writes is PredictWhole's.
        string input = Path.Combine(folder, "phantom.nii.gz"), predicted = Path.Combine(folder, "predicted");
        NiftiWriter.Write(input, x[0][0], [1.0, 1.0]);
        var predict = Cli("predict", "--checkpoint", Path.Combine(folder, "seg2d"), input, "--out", predicted);
        Assert.Equal(0, predict.ExitCode);
        using var written = MedicalFile.Read(Path.Combine(predicted, "phantom_mask.nii.gz"));

        var y = tuner.PredictWhole(x, Metas(x));
        Assert.True(written.Voxels.to(ScalarType.Float32).equal(y[0][0]).all().item<bool>(), "medformer predict's mask is not PredictWhole's");
        var z = RawOutputs(tuner, x);
        Assert.True(y.equal(z.argmax(1, keepdim: true).to(ScalarType.Float32)).all().item<bool>());
        AssertAgrees(Check(exported, x, y, z), y, z, windows: true);

        var crops = x.narrow(2, 6, 16).narrow(3, 4, 16).contiguous();                  // the training shape: whole
        var yWhole = tuner.PredictWhole(crops, Metas(crops));
        var zWhole = RawOutputs(tuner, crops);
        AssertAgrees(Check(exported, crops, yWhole, zWhole), yWhole, zWhole, windows: false);

        AssertAPerturbedHeadWeightIsCaught(exported, x, y, z);
    }

    [Fact]
    public void ASegmentationHeadIn3dExportsWithModelPtAndPredictsAnOddSizedVolumeBySlidingWindows()
    {
        var spec = new PhantomSpec(Dimensionality.Volume, 16, 8, 2, 2);
        using var train = Phantom.Open(spec, "train", PhantomFolder);
        using var test = Phantom.Open(spec, "test", PhantomFolder);
        Seeding.SeedEverything(12);
        using var tuner = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2, dimensionality: Dimensionality.Volume));
        tuner.Fit(train, new FineTuneOptions { MaxSteps = 4, BatchSize = 2, WarmupSteps = 1, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 2,
            Roi = [8, 8, 8] });
        string exported = Export(tuner, "seg3d", torchSave: true);

        using var scope = NewDisposeScope();
        using var sample = test.Get(0);
        // [1,1,13,18,11]: windows of 8³ overlapping unevenly on every axis, the last flush with the border.
        var x = F.pad(sample.Image.unsqueeze(0), [0, 0, 1, 1, 0, 0], TorchSharp.PaddingModes.Replicate).narrow(2, 1, 13).narrow(4, 2, 11).contiguous();
        Assert.Equal([1L, 1, 13, 18, 11], x.shape);
        var y = tuner.PredictWhole(x, Metas(x));
        var z = RawOutputs(tuner, x);
        var report = Check(exported, x, y, z);
        AssertAgrees(report, y, z, windows: true);
        Assert.Empty(report.GetProperty("pt_missing").EnumerateArray());
        Assert.Empty(report.GetProperty("pt_unexpected").EnumerateArray());
        Assert.Equal(0, report.GetProperty("pt_vs_readme").GetDouble());                 // model.pt holds the same float32 weights

        AssertAPerturbedHeadWeightIsCaught(exported, x, y, z);
    }

    [Fact]
    public void ARestorationHeadExportsAndRestoresAsMedformerPredictBySlidingWindows()
    {
        var corpus = new PetCtCorpus(SyntheticPet.Write(Path.Combine(folder, "studies"), 4, 16, seed: 3));
        Seeding.SeedEverything(13);
        using var tuner = new FineTuner(new MedformerModel(Config),
            new ImageToImageHead(Config, ImageToImageHead.Restoration, Dimensionality.Volume, loss: new ImageLoss(L1: 0, Mse: 1)));
        tuner.Fit(corpus, new FineTuneOptions { MaxSteps = 4, BatchSize = 2, WarmupSteps = 1, LearningRate = 3e-3, Precision = Precision.Fp32, LogEvery = 2,
            Roi = [8, 8, 8] });
        string exported = Export(tuner, "pet", torchSave: true);

        using var scope = NewDisposeScope();
        using var sample = corpus.Get(0);
        var x = sample.Image.unsqueeze(0).contiguous();                                 // [1,1,16,16,16]: windows of 8³
        string input = Path.Combine(folder, "study.nii.gz"), predicted = Path.Combine(folder, "predicted");
        NiftiWriter.Write(input, x[0][0], [2.0, 2.0, 2.0]);
        var predict = Cli("predict", "--checkpoint", Path.Combine(folder, "pet"), input, "--out", predicted);
        Assert.Equal(0, predict.ExitCode);
        using var written = MedicalFile.Read(Path.Combine(predicted, "study_restoration.nii.gz"));
        var y = written.Voxels.to(ScalarType.Float32).reshape(x.shape);                 // what medformer predict wrote
        Assert.True(y.allclose(tuner.PredictWhole(x, Metas(x)), rtol: 0, atol: 1e-6), "medformer predict's image is not PredictWhole's");
        Assert.False(y.allclose(x, rtol: 0, atol: 1e-4), "the head still returns its input: nothing to compare");
        var z = RawOutputs(tuner, x);
        var report = Check(exported, x, y, z);
        AssertAgrees(report, y, z, windows: true);
        Assert.Empty(report.GetProperty("pt_missing").EnumerateArray());
        Assert.Empty(report.GetProperty("pt_unexpected").EnumerateArray());
        Assert.True(report.GetProperty("pt_error").GetDouble() < Tolerance, report.ToString());
        Assert.Equal(0, report.GetProperty("pt_vs_readme").GetDouble());

        AssertAPerturbedHeadWeightIsCaught(exported, x, y, z);
    }

    [Theory]
    [InlineData(ImageToImageHead.SuperResolution)]
    [InlineData(ImageToImageHead.Translation)]
    public void SuperResolutionAndTranslationHeadsExportAndPredictAsWeDo(string kind)
    {
        Seeding.SeedEverything(14);
        var config = Config with { QueryChunk = 50 };                                   // a window's 64 or 256 queries decoded in chunks, the last one short
        var head = kind == ImageToImageHead.SuperResolution
            ? new ImageToImageHead(config, kind, Dimensionality.Image, scale: 2)
            : new ImageToImageHead(config, kind, Dimensionality.Image, outChannels: 2, pixelContext: 0);           // position queries alone
        using var tuner = new FineTuner(new MedformerModel(config), head) { InputShape = [1, 8, 8] };   // as Fit with --roi 8,8 records it
        using (no_grad())
        {
            foreach (var parameter in tuner.Model.parameters()) parameter.normal_(std: 0.5);
            foreach (var parameter in tuner.Head.parameters()) parameter.normal_(std: 0.1);  // the output layer starts at zero
        }
        string exported = Export(tuner, kind);

        using var scope = NewDisposeScope();
        var x = rand(2, 1, 12, 10);                                                     // windows of 8², on a ×2 grid for super-resolution
        var y = tuner.PredictWhole(x, Metas(x));
        var z = RawOutputs(tuner, x);
        long[] shape = kind == ImageToImageHead.SuperResolution ? [2, 1, 24, 20] : [2, 2, 12, 10];
        Assert.Equal(shape, y.shape);
        AssertAgrees(Check(exported, x, y, z), y, z, windows: true);
        AssertAPerturbedHeadWeightIsCaught(exported, x, y, z);
    }

    [Fact]
    public void MedformerPyHasEveryBuiltInHeadAndAKindItLacksIsSaidInOneLine()
    {
        // medformer.py's HEADS, PyTorchExport.TwinnedHeads and the built-in heads are one set (tests may register more kinds).
        string[] builtIn = [.. new[] { ClassificationHead.KindName, SegmentationHead.KindName, ImageToImageHead.Restoration, ImageToImageHead.SuperResolution,
            ImageToImageHead.Translation }.Order(StringComparer.Ordinal)];
        var heads = Repo.Run("/usr/bin/python3", ["-c",
            "import json, sys; sys.path.insert(0, sys.argv[1]); import medformer; print(json.dumps(sorted(medformer.HEADS)))",
            Path.Combine(Repo.Root, "bench", "reference")]);
        Assert.True(heads.ExitCode == 0, heads.Stderr);
        Assert.Equal(builtIn, JsonSerializer.Deserialize<string[]>(heads.Stdout)!);
        Assert.Equal(builtIn, PyTorchExport.TwinnedHeads.Order(StringComparer.Ordinal));
        Assert.Subset(HeadRegistry.Kinds.ToHashSet(), PyTorchExport.TwinnedHeads.ToHashSet());

        // A custom head (registered by the program that tuned it, unknown here) exports as its files hold it, said in one line.
        Seeding.SeedEverything(15);
        string source = Path.Combine(folder, "custom");
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3)))
            tuner.Save(source);
        string description = Path.Combine(source, "head.json");
        var json = JsonNode.Parse(File.ReadAllText(description))!.AsObject();
        json["kind"] = "mean";
        File.WriteAllText(description, json.ToJsonString());
        string exported = Path.Combine(folder, "custom-pt");
        var result = Cli("export", source, "--out", exported);
        Assert.Equal(0, result.ExitCode);
        var notes = result.Stdout.Split('\n').Where(l => l.StartsWith("note:", StringComparison.Ordinal)).ToList();
        Assert.Equal(["note: medformer.py has no class for the mean head (it has classification, restoration, segmentation, super-resolution, translation); " +
            "its weights and head.json are exported for your own code, and FineTuned refuses it"], notes);
        Assert.True(File.Exists(Path.Combine(exported, "head.safetensors")));
        Assert.Contains("The mean head has no class in `medformer.py`", File.ReadAllText(Path.Combine(exported, "README.md")));
        var refused = Repo.Run("/usr/bin/python3", ["-c", "import medformer; medformer.FineTuned('config.json', 'head.json')"], exported);
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("ValueError: a mean head: this medformer.py has twins of classification, segmentation, restoration, super-resolution, " +
            "translation heads only", refused.Stderr);
    }
}
