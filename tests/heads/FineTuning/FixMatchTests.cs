using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// <see cref="SemiSupervised.FixMatch"/>: its loss is FixMatch's two means computed by hand, it learns from unlabelled
/// images where labels alone do not suffice, and what it cannot do is refused.
/// </summary>
public sealed class FixMatchTests
{
    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    static FineTuneOptions Quick(long steps) =>
        new() { MaxSteps = steps, BatchSize = 8, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32, LogEvery = 5 };

    static SampleMeta Meta(int index, long[] labels) => new("squares", $"squares[{index}]", index, "other", "other", Dimensionality.Image, [1, 1], labels);

    [Fact]
    public void TheLossIsTheLabelledMeanPlusTheWeightedMeanOverConfidentPseudoLabels()
    {
        Seeding.SeedEverything(3);
        var head = new ClassificationHead(Config, 3, pooling: Pooling.Flatten);
        using var task = new FineTuneModule(new MedformerModel(Config), head, Strategy.Full, () => new JsonObject());
        task.Module.train();
        // The output layer starts at zero (uniform predictions); give it weights so confidences differ.
        using (no_grad())
            foreach (var layer in head.OutputLayers) layer.weight!.normal_(0, 0.5);
        using var scope = NewDisposeScope();
        // Samples 0 and 3 labelled, the others not; weak and strong views differ.
        var weak = randn(6, 1, 16, 16);
        var strong = randn(6, 1, 16, 16);
        long[][] labels = [[2], [], [], [0], [], []];
        var metas = labels.Select((l, i) => Meta(i, l)).ToList();
        using var batch = new Batch(0, [new BatchView(weak.alias(), null, null), new BatchView(strong.alias(), null, null)], metas);

        // By hand: the predictions on the weak unlabelled views, a threshold between their top probabilities.
        long[] unlabelled = [1, 2, 4, 5];
        var unlabelledMetas = unlabelled.Select(i => metas[(int)i]).ToList();
        Tensor top, classes;
        using (no_grad())
            (top, classes) = head.Predict(task.Outputs(weak.index_select(0, tensor(unlabelled)), unlabelledMetas)).max(1);
        float[] confidence = top.data<float>().ToArray();
        double threshold = confidence.Order().ElementAt(2);  // two of the four pass (ties aside)
        var confident = top.ge(threshold).to(ScalarType.Float32);
        var supervised = nn.functional.cross_entropy(task.Outputs(weak.index_select(0, tensor(new long[] { 0, 3 })), [metas[0], metas[3]]),
            tensor(new long[] { 2, 0 }));
        var unsupervisedEach = nn.functional.cross_entropy(task.Outputs(strong.index_select(0, tensor(unlabelled)), unlabelledMetas), classes,
            reduction: nn.Reduction.None);
        var unsupervised = (unsupervisedEach * confident).mean();
        double weight = 0.5;

        task.FixMatch = new FixMatchOptions { Threshold = threshold, Weight = weight };
        using var generator = new Generator(1);
        var step = new StepContext(1, generator, x => x);
        var (loss, parts) = task.Loss(batch, step);
        Assert.Equal((supervised + unsupervised * weight).item<float>(), loss.item<float>(), 4);
        Assert.Equal(supervised.item<float>(), parts["supervised"].item<float>(), 4);
        Assert.Equal(unsupervised.item<float>(), parts["unsupervised"].item<float>(), 4);
        Assert.Equal(confident.mean().item<float>(), parts["pseudo_label_rate"].item<float>(), 5);

        // Per sample, in the batch's order: labelled losses scaled by B/n_l, unlabelled ones by λ_u·B/n_u where confident.
        var (losses, _) = task.PerSampleLoss(batch, step)!.Value;
        float[] each = losses.data<float>().ToArray();
        float[] unsupervisedValues = (unsupervisedEach * confident * (weight * 6 / 4.0)).data<float>().ToArray();
        for (int k = 0; k < unlabelled.Length; k++) Assert.Equal(unsupervisedValues[k], each[unlabelled[k]], 4);
        Assert.Equal(supervised.item<float>() * 2 * (6 / 2.0), each[0] + each[3], 3);
        Assert.Equal(loss.item<float>(), losses.mean().item<float>(), 4);

        // Outside training (or without FixMatch) the loss is the plain one over the first view.
        task.Module.eval();
        Assert.Empty(task.Loss(new Batch(0, [new BatchView(weak.narrow(0, 0, 1), null, null)], [metas[0]]), step).Parts);
        task.FixMatch = null;
    }

    [Fact]
    public void PredictionsOnStrongViewsComeToAgreeWithTheWeakOnes()
    {
        // FixMatch's objective, measured: how often the class of a strongly augmented unlabelled image is the class of
        // the image itself. The same start and steps with and without the unlabelled term; FixMatch agrees more.
        using var squares = ClassificationHeadTests.Squares(150, 1, LabelKind.MultiClass);
        var labelled = new SubsetCorpus(squares, [.. Enumerable.Range(0, 30).Select(i => (long)i)], "squares (30 labels)");
        var rest = new SubsetCorpus(squares, [.. Enumerable.Range(30, 120).Select(i => (long)i)], "squares (the rest)");
        // Noise and small holes keep a square's class; shifts and shears of a few pixels would not (its column is the class).
        var strongAugment = new Compose([new RandGaussianNoise(1, Std: 0.4, SampleStd: false), new RandScaleIntensity(0.3, 1), new RandCoarseDropout(1, [2],
            MaxSpatialSize: [3], Probability: 1)]);
        using var clean = stack(Enumerable.Range(30, 120).Select(i => squares.Get(i).Image));
        using var strong = stack(Enumerable.Range(30, 120).Select(i =>
        {
            using var sample = squares.Get(i);
            return strongAugment.Apply(sample, new Random(i)).Image;
        }));
        (double Agreement, double Accuracy, IReadOnlyList<TrainerLog> Logs) Run(bool fixMatch)
        {
            Seeding.SeedEverything(0);
            using var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
            tuner.Fit(labelled, Quick(30));
            var logs = new List<TrainerLog>();
            if (fixMatch) tuner.FixMatch(labelled, rest, new FixMatchOptions { Threshold = 0.5, UnlabelledRatio = 2, StrongAugment = strongAugment }, Quick(30),
                log: logs.Add);
            else tuner.Fit(labelled, Quick(30), log: logs.Add);
            using var onClean = tuner.Predict(clean).argmax(1);
            using var onStrong = tuner.Predict(strong).argmax(1);
            return (onClean.eq(onStrong).to(ScalarType.Float64).mean().item<double>(), tuner.Evaluate(rest)["accuracy"], logs);
        }
        var (labelsOnly, labelsOnlyAccuracy, _) = Run(false);
        var (semi, semiAccuracy, fixMatchLogs) = Run(true);
        Assert.True(semi > labelsOnly + 0.05, $"strong views agree with the clean image {semi:P0} after FixMatch, {labelsOnly:P0} after labels alone");
        Assert.True(semiAccuracy > 0.7, $"accuracy {semiAccuracy:P0} (labels alone {labelsOnlyAccuracy:P0})");
        Assert.All(fixMatchLogs, l => Assert.Contains("unsupervised", l.Parts.Keys));
        Assert.Contains(fixMatchLogs, l => l.Parts["pseudo_label_rate"] > 0.5);
    }

    [Fact]
    public void WhatFixMatchCannotDoIsRefused()
    {
        using var train = ClassificationHeadTests.Squares(12, 1, LabelKind.MultiClass);
        using var unlabelled = ClassificationHeadTests.Squares(12, 2, LabelKind.MultiClass);
        Seeding.SeedEverything(0);
        using (var multiLabel = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, LabelKind.MultiLabel)))
            Assert.Contains("it needs a multi-class, binary or ordinal classification head, not classification (multi-label)",
                Assert.Throws<ArgumentException>(() => multiLabel.FixMatch(train, unlabelled, options: Quick(2))).Message);
        using (var segmenter = new FineTuner(new MedformerModel(Config), new SegmentationHead(Config, classes: 2)))
            Assert.Contains("not segmentation", Assert.Throws<ArgumentException>(() => segmenter.FixMatch(train, unlabelled, options: Quick(2))).Message);
        using var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3));
        Assert.Contains("FixMatch and mixup do not combine", Assert.Throws<ArgumentException>(() => tuner.FixMatch(train, unlabelled,
            options: Quick(2) with { Mixup = 0.2 })).Message);
        (FixMatchOptions Options, string Message)[] cases =
        [
            (new() { Threshold = 1.5 }, "threshold 1.5 must be in [0, 1]"),
            (new() { Weight = 0 }, "weight 0 must be positive"),
            (new() { UnlabelledRatio = -1 }, "unlabelled ratio -1 must be positive"),
        ];
        foreach (var (options, message) in cases)
            Assert.Contains(message, Assert.Throws<ArgumentException>(() => tuner.FixMatch(train, unlabelled, options, Quick(2))).Message);

        // The unlabelled corpus's own labels are hidden: FixMatch sees none.
        var hidden = RelabelledCorpus.WithoutLabels(unlabelled);
        Assert.Equal(unlabelled.Count, hidden.Count);
        using var sample = hidden.Get(5);
        Assert.Empty(sample.Meta.Labels);
        Assert.Equal("squares/unlabelled", hidden.Name);
    }
}
