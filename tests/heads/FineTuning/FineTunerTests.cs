using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Heads;

/// <summary>
/// A head written here, outside the project: the latents' mean, one linear layer, cross-entropy. It plugs into the
/// FineTuner as the built-in heads do, and registers a kind so a saved model reloads with it.
/// </summary>
sealed class MeanLinearHead : Head
{
    public const string KindName = "test-mean-linear";
    private readonly TorchSharp.Modules.Linear fc;

    public MeanLinearHead(MedformerConfig config, int classes, string task = "other") : base(nameof(MeanLinearHead), task)
    {
        Classes = classes;
        fc = nn.Linear(config.Dim, classes);
        RegisterComponents();
    }

    public int Classes { get; }

    public override string Kind => KindName;

    public override JsonObject Settings() => new() { ["classes"] = Classes };

    public override Tensor forward(HeadInput input) => fc.call(input.Latents.mean([1])).to(ScalarType.Float32);

    public override Tensor Losses(Tensor outputs, Batch batch) =>
        F.cross_entropy(outputs, tensor(batch.Metas.Select(m => m.Labels[0]).ToArray(), device: outputs.device), reduction: nn.Reduction.None);

    public override Tensor Predict(Tensor outputs) => outputs.softmax(1);

    public override HeadMetric CreateMetric() => new ClassificationMetric(Classes, multiLabel: false);
}

public sealed class FineTunerTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-finetuner-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    static TensorCorpus Squares(int count, long seed) => ClassificationHeadTests.Squares(count, seed, LabelKind.MultiClass);

    static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    static FineTuneOptions Quick(long steps, string? output = null) =>
        new() { MaxSteps = steps, BatchSize = 16, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32, LogEvery = 5, OutputDirectory = output };

    [Fact]
    public void ACustomHeadPlugsIntoTheSameApi()
    {
        using var train = Squares(96, 1);
        using var test = Squares(48, 2);
        Seeding.SeedEverything(0);
        using var tuner = new FineTuner(new MedformerModel(Config), new MeanLinearHead(Config, 3));
        var result = tuner.Fit(train, Quick(120, Path.Combine(root, "custom")), test);
        Assert.True(result.Validation!["accuracy"] > 0.8, $"accuracy {result.Validation["accuracy"]}");

        HeadRegistry.Register(MeanLinearHead.KindName, (config, task, settings) => new MeanLinearHead(config, int.Parse(HeadRegistry.Text(settings,
            "classes")!), task));
        using var reloaded = FineTuner.Load(result.ModelDirectory!);
        Assert.IsType<MeanLinearHead>(reloaded.Head);
        var samples = Enumerable.Range(0, 8).Select(i => test.Get(i)).ToList();
        using var images = stack(samples.Select(s => s.Image));
        using var before = tuner.Predict(images);
        using var after = reloaded.Predict(images);
        Assert.True(before.allclose(after, atol: 1e-6), "a reloaded model predicts what the tuned one did");
        foreach (var s in samples) s.Dispose();
    }

    [Fact]
    public void HeadWeightsOfAnotherHeadAreRefusedNamingTheFileAndTheKey()
    {
        string three = Path.Combine(root, "three"), four = Path.Combine(root, "four");
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Mean))) tuner.Save(three);
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 4, pooling: Pooling.Mean))) tuner.Save(four);
        File.Copy(Path.Combine(four, FineTuneModule.HeadFile), Path.Combine(three, FineTuneModule.HeadFile), overwrite: true);
        var e = Assert.Throws<InvalidDataException>(() => FineTuner.Load(three));
        Assert.StartsWith(Path.Combine(three, FineTuneModule.HeadWeightsFile) +
            ": cannot load into this ClassificationHead: size mismatch for 'fc.weight': [3, 32] in the checkpoint but [4, 32] in this " +
                "ClassificationHead; size mismatch for 'fc.bias'",
            e.Message);
    }

    [Fact]
    public void StrategiesTrainWhatTheySay()
    {
        using var train = Squares(32, 1);
        Dictionary<string, Tensor> Weights(MedformerModel model) => model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().clone());
        (Dictionary<string, Tensor> Before, Dictionary<string, Tensor> After, Tensor HeadBefore, Tensor HeadAfter) Run(Strategy strategy)
        {
            Seeding.SeedEverything(0);
            var model = new MedformerModel(Config);
            var head = new ClassificationHead(Config, 3, pooling: Pooling.Mean);
            using var tuner = new FineTuner(model, head, strategy);
            var before = Weights(model);
            var headBefore = head.state_dict()["fc.weight"].detach().clone();
            tuner.Fit(train, Quick(3));
            return (before, Weights(model), headBefore, head.state_dict()["fc.weight"].detach().clone());
        }
        bool Changed((Dictionary<string, Tensor> Before, Dictionary<string, Tensor> After, Tensor, Tensor) run, string key) =>
            !Same(run.Before[key], run.After[key]);

        var probe = Run(Strategy.LinearProbe);
        Assert.All(probe.Before.Keys, key => Assert.False(Changed(probe, key), $"{key} changed under a linear probe"));
        Assert.False(Same(probe.HeadBefore, probe.HeadAfter));

        var last = Run(Strategy.LastBlocks(1));
        Assert.True(Changed(last, "blocks.1.attn.qkv.weight") && Changed(last, "ln_f.weight"));
        Assert.False(Changed(last, "blocks.0.attn.qkv.weight") || Changed(last, "encoder.attn.q.weight") || Changed(last, "tokenizer_2d.proj.weight"));

        var full = Run(Strategy.Full);
        Assert.True(Changed(full, "blocks.0.attn.qkv.weight") && Changed(full, "tokenizer_2d.proj.weight") && Changed(full, "latents.task.classification"));

        var llrd = Strategy.LayerwiseDecay(0.5);
        Assert.Equal(0.5 * 0.5 * 0.5 * 0.5, llrd.LearningRateScale("tokenizer_2d.proj.weight", Config));
        Assert.Equal(0.5 * 0.5 * 0.5, llrd.LearningRateScale("encoder.attn.q.weight", Config));
        Assert.Equal(0.5, llrd.LearningRateScale("blocks.1.mlp.fc1.weight", Config));
        Assert.Equal(1, llrd.LearningRateScale("decoder.attn.q.weight", Config));
        Assert.True(Changed(Run(llrd), "tokenizer_2d.proj.weight"));
        Assert.Equal(Strategy.LastBlocks(2), Strategy.Parse("last:2"));
        Assert.Equal(llrd, Strategy.Parse("llrd:0.5"));
        Assert.Throws<ArgumentException>(() => new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3), Strategy.LastBlocks(3)));
    }

    [Fact]
    public void ANewTaskBankIsAddedToAPretrainedModel()
    {
        Seeding.SeedEverything(0);
        string folder = Path.Combine(root, "pretrained");
        using (var pretrained = new MedformerModel(Config)) Checkpoint.Save(pretrained, folder);
        var head = new ClassificationHead(Config, 3, task: "squares");
        var e = Assert.Throws<ArgumentException>(() => new FineTuner(Checkpoint.Load(folder), head));
        Assert.Contains("no task bank 'squares'", e.Message);

        var model = Pretrained.Load(folder, tasks: ["squares"]);
        Assert.Equal("squares", model.Config.Tasks[^1]);
        using var tuner = new FineTuner(model, head);
        using var train = Squares(32, 1);
        var before = model.state_dict()["latents.task.squares"].detach().clone();
        var result = tuner.Fit(train, Quick(3, Path.Combine(root, "tuned")));
        Assert.False(Same(before, model.state_dict()["latents.task.squares"]), "the new bank trains");
        Assert.Contains("squares", Checkpoint.ReadConfig(result.ModelDirectory!).Tasks);
    }

    [Fact]
    public void BadInputsAreClearErrors()
    {
        Seeding.SeedEverything(0);
        // A label count that does not match the head.
        using (var corpus = new TensorCorpus("bad", randn(8, 1, 16, 16), tensor(new long[] { 0, 1, 5, 2, 0, 1, 2, 0 })))
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3)))
            Assert.Contains("label 5 is outside the head's 3 classes", Assert.Throws<ArgumentException>(() => tuner.Fit(corpus, Quick(2))).Message);
        using (var corpus = new TensorCorpus("one-label", randn(8, 1, 16, 16), tensor(new long[] { 0, 1, 1, 0, 0, 1, 1, 0 })))
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 6, LabelKind.MultiLabel)))
            Assert.Contains("the multi-label head has 6 labels, the sample 1", Assert.Throws<ArgumentException>(() => tuner.Fit(corpus, Quick(2))).Message);

        // A checkpoint of another model; a missing folder; a folder that is no fine-tuned model.
        string other = Path.Combine(root, "other");
        using (var wide = new MedformerModel(Config with { Dim = 48, SelfAttentionHeads = 4, DecoderHeads = 4 })) Checkpoint.Save(wide, other);
        File.WriteAllText(Path.Combine(other, Checkpoint.ConfigFile), Config.ToJson());  // the config says one model, the weights are another's
        Assert.Contains("in the checkpoint but", Assert.Throws<InvalidDataException>(() => Pretrained.Load(other)).Message);
        Assert.Contains("no such checkpoint folder", Assert.Throws<DirectoryNotFoundException>(() => Pretrained.Load(Path.Combine(root, "missing"))).Message);
        Assert.Contains("not a fine-tuned one", Assert.Throws<InvalidDataException>(() => FineTuner.Load(other)).Message);

        // A fraction out of (0, 1].
        using var squares = Squares(12, 1);
        foreach (double fraction in new[] { 0.0, -0.1, 1.5, double.NaN })
            Assert.Contains("must be in (0, 1]", Assert.Throws<ArgumentException>(() => LabelFraction.Draw(squares, fraction, 0)).Message);
        using var sixty = Squares(60, 1);
        var tenth = LabelFraction.Draw(sixty, 0.1, 0);
        Assert.Equal(6, tenth.Count);

        // An image smaller than the patch; a volume for a model tuned on images.
        using (var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3)) { InputShape = [1, 16, 16] })
        {
            using var tiny = randn(1, 1, 2, 2);
            Assert.Contains("multiple of the patch size 4", Assert.Throws<ArgumentException>(() => tuner.Predict(tiny)).Message);
            string nifti = Path.Combine(root, "volume.nii.gz");
            using (var voxels = rand(8, 16, 16)) NiftiWriter.Write(nifti, voxels, [1.0, 1.0, 1.0]);
            var e = Assert.Throws<InvalidDataException>(() => PredictionInputs.Read(nifti, tuner.InputShape));
            Assert.Contains("volume.nii.gz: a 3D volume [8, 16, 16]; the model was fine-tuned on 2D images", e.Message);
        }
    }

    [Fact]
    public void EveryTaskTypeStartsUniformAndItsPerSampleLossesAverageToTheLoss()
    {
        using var corpus = Squares(8, 3);
        using var batch = new DataLoader([new LoaderSource(new Relabelled(corpus, l => l))], new LoaderOptions(8, Workers: 1)).Batches().First();
        foreach (var (type, classes) in new[] { (LabelKind.MultiClass, 3), (LabelKind.Binary, 2), (LabelKind.Ordinal, 3) })
        {
            Seeding.SeedEverything(0);
            using var head = new ClassificationHead(Config, classes, type);
            using var model = new MedformerModel(Config);
            using var outputs = head.call(new HeadInput(model, model.forward(batch.Images, [.. batch.Metas.Select(_ => LatentKey.Other)]), batch.Images.shape,
                batch.Metas));
            using var probabilities = head.Predict(outputs);
            Assert.True(probabilities.sub(1.0 / classes).abs().max().item<float>() < 1e-5, $"{type} starts uniform");
            var labels = batch.Metas.Select(m => Math.Min(m.Labels[0], classes - 1)).ToArray();
            var relabelled = new Batch(0, batch.Views, [.. batch.Metas.Select((m, i) => m with { Labels = [labels[i]] })]);  // shares the batch's views
            using var losses = head.Losses(outputs, relabelled);
            Assert.Equal(Math.Log(classes), losses.mean().item<float>(), 4);
        }
    }
}
