using Medformer.Datasets.Corpora;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// <see cref="SemiSupervised.SelfTrain"/> and <see cref="SemiSupervised.PseudoLabel"/>: the pseudo-labels are the tuned
/// model's confident predictions, the student learns from them, rounds write their own folders, and what cannot be
/// self-trained is refused.
/// </summary>
public sealed class SelfTrainingTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-selftrain-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => ClassificationHeadTests.Config with { Depth = 2 };

    static FineTuneOptions Quick(long steps, string? output = null) =>
        new() { MaxSteps = steps, BatchSize = 16, LearningRate = 2e-3, WarmupSteps = 5, Precision = Precision.Fp32, LogEvery = 5, OutputDirectory = output };

    /// <summary>Squares without their labels: the images pseudo-labelling reads.</summary>
    static TensorCorpus Unlabelled(int count, long seed)
    {
        using var labelled = ClassificationHeadTests.Squares(count, seed, LabelKind.MultiClass);
        var images = stack(Enumerable.Range(0, count).Select(i => labelled.Get(i).Image));
        using (images)
            return new TensorCorpus("squares/unlabelled", images);
    }

    static FineTuner Teacher(ICorpus train, long steps)
    {
        Seeding.SeedEverything(0);
        var tuner = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
        tuner.Fit(train, Quick(steps));
        return tuner;
    }

    [Fact]
    public void PseudoLabelsAreTheConfidentPredictions()
    {
        using var train = ClassificationHeadTests.Squares(24, 1, LabelKind.MultiClass);
        using var unlabelled = Unlabelled(40, 3);
        using var tuner = Teacher(train, 10);
        using var images = stack(Enumerable.Range(0, 40).Select(i => unlabelled.Get(i).Image));
        using var probabilities = tuner.Predict(images);
        var (top, predicted) = probabilities.max(1);
        float[] confidence = top.data<float>().ToArray();
        long[] classes = predicted.data<long>().ToArray();

        var all = tuner.PseudoLabel(unlabelled)!;
        Assert.Equal(40, all.Count);
        Assert.Equal(Enumerable.Range(0, 40).Select(i => (long)i), all.Indices);
        Assert.Equal(classes, Enumerable.Range(0, 40).Select(i => all.LabelsOf(i)[0]));

        // A threshold between the lowest and highest confidence keeps exactly the predictions at or above it.
        double threshold = (confidence.Min() + confidence.Max()) / 2;
        var kept = Enumerable.Range(0, 40).Where(i => confidence[i] >= threshold).ToArray();
        var confident = tuner.PseudoLabel(unlabelled, threshold)!;
        Assert.InRange(kept.Length, 1, 39);
        Assert.Equal(kept.Select(i => (long)i), confident.Indices);
        using var sample = confident.Get(0);
        using var original = unlabelled.Get(kept[0]);
        Assert.True(sample.Image.eq(original.Image).all().item<bool>(), "a pseudo-labelled sample is the unlabelled image");
        Assert.Equal([classes[kept[0]]], sample.Meta.Labels);
        Assert.Null(tuner.PseudoLabel(unlabelled, Math.BitIncrement((double)confidence.Max())));
        top.Dispose();
        predicted.Dispose();
    }

    [Fact]
    public void TheStudentLearnsWhatTheTeacherLabelled()
    {
        // Three labelled squares (one a class) teach a teacher a little; 300 images without labels then carry its labels.
        using var squares = ClassificationHeadTests.Squares(30, 1, LabelKind.MultiClass);
        var few = new SubsetCorpus(squares, [0, 1, 2], "squares (3 labels)");
        using var unlabelled = Unlabelled(300, 3);
        using var test = ClassificationHeadTests.Squares(90, 2, LabelKind.MultiClass);
        using var tuner = Teacher(few, 30);
        double teacher = tuner.Evaluate(test)["accuracy"];
        var pseudo = tuner.PseudoLabel(unlabelled)!;

        var result = tuner.SelfTrain(few, unlabelled, new SelfTrainingOptions { Rounds = 2, UnlabelledShare = 0.75, Steps = 60 }, Quick(1000, Path.Combine(root,
            "run")));
        Assert.Equal([new PseudoLabelRound(1, 300, 300), new PseudoLabelRound(2, 300, 300)], result.Rounds);
        Assert.Equal(60, result.FineTuning.Training.Steps);
        Assert.Equal(Path.Combine(root, "run", "self-training-2", "model"), result.FineTuning.ModelDirectory);
        Assert.True(File.Exists(Path.Combine(root, "run", "self-training-1", "model", "head.safetensors")));

        // The student agrees with the first round's pseudo-labels on most images, and is no worse on the test set.
        var again = tuner.PseudoLabel(unlabelled)!;
        double agreement = Enumerable.Range(0, 300).Count(i => again.LabelsOf(i)[0] == pseudo.LabelsOf(i)[0]) / 300.0;
        double student = tuner.Evaluate(test)["accuracy"];
        Assert.True(agreement > 0.8, $"the student agrees with {agreement:P0} of the teacher's labels");
        Assert.True(student >= teacher - 0.02, $"student {student:P1} vs teacher {teacher:P1}");
    }

    [Fact]
    public void AFreshStudentLearnsFromTheTeachersLabelsAndLeavesTheTeacherAlone()
    {
        using var train = ClassificationHeadTests.Squares(30, 1, LabelKind.MultiClass);
        using var unlabelled = Unlabelled(200, 3);
        using var test = ClassificationHeadTests.Squares(90, 2, LabelKind.MultiClass);
        using var teacher = Teacher(train, 60);
        using var images = stack(Enumerable.Range(0, 20).Select(i => unlabelled.Get(i).Image));
        using var before = teacher.Predict(images);

        Seeding.SeedEverything(7);
        using var student = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, pooling: Pooling.Flatten));
        double untrained = student.Evaluate(test)["accuracy"];
        var result = teacher.SelfTrain(train, unlabelled, new SelfTrainingOptions { Steps = 60, UnlabelledShare = 0.8 }, Quick(60), student: student);
        Assert.Equal(60, result.FineTuning.Training.Steps);
        double learned = student.Evaluate(test)["accuracy"], teacherAccuracy = teacher.Evaluate(test)["accuracy"];
        Assert.True(learned > 0.8 && learned > untrained + 0.3, $"the student went from {untrained:P0} to {learned:P0} (teacher {teacherAccuracy:P0})");
        using var after = teacher.Predict(images);
        Assert.True(before.eq(after).all().item<bool>(), "the teacher's weights did not move");

        using var wrong = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 4));
        Assert.Contains("the student's head must be a multi-class classification head of 3 classes",
            Assert.Throws<ArgumentException>(() => teacher.SelfTrain(train, unlabelled, student: wrong)).Message);
    }

    [Fact]
    public void WhatCannotBeSelfTrainedIsRefused()
    {
        using var train = ClassificationHeadTests.Squares(24, 1, LabelKind.MultiClass);
        using var unlabelled = Unlabelled(8, 3);
        Seeding.SeedEverything(0);
        using (var fresh = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3)))
            Assert.Contains("starts from a fine-tuned model", Assert.Throws<InvalidOperationException>(() => fresh.SelfTrain(train, unlabelled)).Message);
        using (var multiLabel = new FineTuner(new MedformerModel(Config), new ClassificationHead(Config, 3, LabelKind.MultiLabel)))
            Assert.Contains("ordinal classification head, not classification (multi-label)", Assert.Throws<ArgumentException>(() => multiLabel.SelfTrain(train,
                unlabelled)).Message);
        using var tuner = Teacher(train, 2);
        (SelfTrainingOptions Options, string Message)[] cases =
        [
            (new() { Threshold = 1.5 }, "threshold 1.5 must be in [0, 1]"),
            (new() { UnlabelledShare = 1 }, "unlabelled share 1 must be in (0, 1)"),
            (new() { Rounds = 0 }, "rounds 0 must be at least 1"),
            (new() { Steps = 0 }, "steps 0 must be at least 1"),
        ];
        foreach (var (options, message) in cases)
            Assert.Contains(message, Assert.Throws<ArgumentException>(() => tuner.SelfTrain(train, unlabelled, options)).Message);
        using var larger = new TensorCorpus("squares/32", zeros(4, 1, 32, 32));
        Assert.Contains("corpus 'squares/32': images [1,32,32], but the model was fine-tuned on [1,16,16]",
            Assert.Throws<ArgumentException>(() => tuner.PseudoLabel(larger)).Message);
    }

    [Fact]
    public void TheImagesWithoutLabelsAreTheRestOfTheDraw()
    {
        using var corpus = ClassificationHeadTests.Squares(60, 1, LabelKind.MultiClass);
        var drawn = (SubsetCorpus)LabelFraction.Draw(corpus, 0.1, seed: 4);
        var rest = (SubsetCorpus)LabelFraction.Rest(corpus, drawn)!;
        Assert.Equal(Enumerable.Range(0, 60).Select(i => (long)i), drawn.Indices.Concat(rest.Indices).Order());
        Assert.Null(LabelFraction.Rest(corpus, LabelFraction.Draw(corpus, 1, seed: 4)));
        using (var other = ClassificationHeadTests.Squares(6, 2, LabelKind.MultiClass))
            Assert.Contains("is not a draw of", Assert.Throws<ArgumentException>(() => LabelFraction.Rest(corpus, other)).Message);

        var relabelled = new RelabelledCorpus(corpus, [5, 7], [[2], [0]], "pseudo");
        using (var sample = relabelled.Get(1))
        using (var original = corpus.Get(7))
        {
            Assert.Equal([0L], sample.Meta.Labels);
            Assert.True(sample.Image.eq(original.Image).all().item<bool>());
        }
        Assert.Contains("2 label sets for 1 samples", Assert.Throws<ArgumentException>(() => new RelabelledCorpus(corpus, [1], [[0], [1]])).Message);
        Assert.Contains("index 60 is outside", Assert.Throws<ArgumentException>(() => new RelabelledCorpus(corpus, [60], [[0]])).Message);
    }
}
