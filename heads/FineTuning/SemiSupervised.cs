using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// Learning from images without labels after (or while) fine-tuning, on a <see cref="FineTuner"/>: pseudo-labelling,
/// self-training (teacher → student rounds) and FixMatch. Classification heads with one label per image
/// (multi-class, binary, ordinal): a pseudo-label is a class.
/// <code>
/// tuner.Fit(train, options, validation);
/// var selfTrained = tuner.SelfTrain(train, unlabelled, new SelfTrainingOptions { Threshold = 0.9 }, options, validation);
/// // or, from the pretrained weights on: tuner.FixMatch(train, unlabelled, new FixMatchOptions(), options, validation);
/// </code>
/// </summary>
public static class SemiSupervised
{
    /// <summary>
    /// Self-training (see <see cref="SelfTrainingOptions"/>): <paramref name="teacher"/>, fine-tuned already
    /// (Fit, or <see cref="FineTuner.Load"/>), labels <paramref name="unlabelled"/>; then the student fine-tunes over
    /// <paramref name="train"/> and the confident pseudo-labels, mixed in each batch, for as many rounds as asked (each
    /// round's student labels the images for the next). The student is the teacher (training goes on from its weights)
    /// unless <paramref name="student"/> gives another (a fresh model and head from the pretrained weights, as Noisy
    /// Student and SimCLRv2 distil into a new network; the caller owns it). With an output folder, round N writes its
    /// checkpoints and model to <c>self-training-N/</c> in it; the result names the last round's model.
    /// </summary>
    public static SelfTrainingResult SelfTrain(this FineTuner teacher, ICorpus train, ICorpus unlabelled, SelfTrainingOptions? selfTraining = null,
        FineTuneOptions? options = null, ICorpus? validation = null, Action<TrainerLog>? log = null, Action<string>? notice = null,
        CancellationToken cancel = default, FineTuner? student = null)
    {
        selfTraining ??= new SelfTrainingOptions();
        selfTraining.Validate();
        var head = OneClassPerImage(teacher.Head, "self-training");
        if (teacher.InputShape is null)
            throw new InvalidOperationException("self-training starts from a fine-tuned model (Fit or Load it first): its predictions are the pseudo-labels");
        student ??= teacher;
        if (student.Head is not ClassificationHead other || other.Classes != head.Classes || other.Type != head.Type)
            throw new ArgumentException($"the student's head must be a {TaskTypes.Name(head.Type)} classification head of " +
                $"{head.Classes} classes, as the teacher's");
        options ??= new FineTuneOptions();
        if (selfTraining.Steps is { } steps) options = options with { MaxSteps = steps };
        if (selfTraining.Augment is { } noise) options = options with { Augment = noise };
        var rounds = new List<PseudoLabelRound>();
        FineTuneResult? result = null;
        for (int round = 1; round <= selfTraining.Rounds; round++, teacher = student)
        {
            var pseudo = teacher.PseudoLabel(unlabelled, selfTraining.Threshold)
                ?? throw new InvalidOperationException($"corpus '{unlabelled.Name}': no prediction reaches the threshold {selfTraining.Threshold}; lower it");
            rounds.Add(new PseudoLabelRound(round, pseudo.Count, unlabelled.Count));
            notice?.Invoke($"self-training round {round}/{selfTraining.Rounds}: {pseudo.Count} of {unlabelled.Count} images " +
                $"of '{unlabelled.Name}' pseudo-labelled");
            // Each round keeps its own checkpoints and model beside the teacher's (OUT/self-training-N/model).
            var roundOptions = options.OutputDirectory is null ? options : options with { OutputDirectory = Path.Combine(options.OutputDirectory,
                $"self-training-{round}") };
            student.ClassNames ??= teacher.ClassNames;
            result = student.Fit(train, augment => [new LoaderSource(train, 1 - selfTraining.UnlabelledShare, augment), new LoaderSource(pseudo,
                selfTraining.UnlabelledShare, augment)],
                roundOptions, validation, log, notice, cancel);
        }
        return new SelfTrainingResult(result!, rounds);
    }

    /// <summary>
    /// The head's classes for the images of <paramref name="unlabelled"/> whose top probability reaches
    /// <paramref name="threshold"/>, as a corpus of those images under those labels (null when none does).
    /// </summary>
    public static RelabelledCorpus? PseudoLabel(this FineTuner tuner, ICorpus unlabelled, double threshold = 0, int batchSize = 256)
    {
        if (tuner.Head.Output != HeadOutput.Probabilities)
            throw new ArgumentException($"the {tuner.Head.Kind} head gives no class probabilities to pseudo-label with");
        var indices = new List<long>();
        var labels = new List<long[]>();
        long index = 0;
        // Strict: a dropped sample would shift every later index off its pseudo-label.
        foreach (var batch in new DataLoader([new LoaderSource(unlabelled)], new LoaderOptions(batchSize, Workers: 1, Strict: true)).Pass())
            using (batch)
            {
                if (tuner.InputShape is { } shape && !batch.Images.shape[1..].SequenceEqual(shape))
                    throw new ArgumentException($"corpus '{unlabelled.Name}': images [{string.Join(",", batch.Images.shape[1..])}], but the model was " +
                        $"fine-tuned on [{string.Join(",", shape)}]");
                using var probabilities = tuner.Predict(batch.Images, batch.Metas, batchSize);
                var (top, classes) = probabilities.max(1);
                using (top)
                using (classes)
                {
                    var confidence = top.data<float>().ToArray();
                    var predicted = classes.data<long>().ToArray();
                    for (int i = 0; i < confidence.Length; i++, index++)
                        if (confidence[i] >= threshold)
                        {
                            indices.Add(index);
                            labels.Add([predicted[i]]);
                        }
                }
            }
        return indices.Count == 0 ? null : new RelabelledCorpus(unlabelled, indices, labels, $"{unlabelled.Name}/pseudo-labelled");
    }

    /// <summary>
    /// FixMatch (Sohn et al., 2020; see <see cref="FixMatchOptions"/>): fine-tunes on <paramref name="train"/>'s labels
    /// and, at once, on <paramref name="unlabelled"/>'s images (whatever labels they carry are hidden): each batch
    /// holds BatchSize labelled images under the fine-tuning augmentation (the weak view) and about μ·BatchSize
    /// unlabelled ones, each seen twice: the model's prediction on the weak view, where its top probability reaches
    /// the threshold, is the label the strong view (weak, then <see cref="FixMatchOptions.StrongAugment"/>) learns.
    /// The log's parts: <c>supervised</c>, <c>unsupervised</c> and <c>pseudo_label_rate</c> (the share of confident
    /// unlabelled images).
    /// </summary>
    public static FineTuneResult FixMatch(this FineTuner tuner, ICorpus train, ICorpus unlabelled, FixMatchOptions? fixMatch = null,
        FineTuneOptions? options = null,
        ICorpus? validation = null, Action<TrainerLog>? log = null, Action<string>? notice = null, CancellationToken cancel = default)
    {
        fixMatch ??= new FixMatchOptions();
        fixMatch.Validate();
        options ??= new FineTuneOptions();
        OneClassPerImage(tuner.Head, "FixMatch");
        if (options.Mixup > 0) throw new ArgumentException("FixMatch and mixup do not combine here: pick one");
        var hidden = RelabelledCorpus.WithoutLabels(unlabelled);
        int batch = (int)Math.Round(options.BatchSize * (1 + fixMatch.UnlabelledRatio));
        tuner.FineTuneModule.FixMatch = fixMatch;
        try
        {
            return tuner.Fit(train, weak =>
            {
                ITransform strong = fixMatch.StrongAugment ?? FixMatchOptions.DefaultStrongAugment(tuner.InputShape![1..]);
                strong = weak is null ? strong : new Compose([weak, strong]);
                // Labelled images carry two views as well (a batch's samples agree in their views); the second is unused.
                var labelledViews = new[] { weak ?? Identity, weak ?? Identity };
                return [new LoaderSource(train, 1, ViewTransforms: labelledViews), new LoaderSource(hidden, fixMatch.UnlabelledRatio,
                    ViewTransforms: [weak ?? Identity, strong])];
            }, options, validation, log, notice, cancel, batch);
        }
        finally
        {
            tuner.FineTuneModule.FixMatch = null;
        }
    }

    static readonly ITransform Identity = new Compose([]);

    /// <summary>The head, where pseudo-labels can be its classes (one per image); else an error naming <paramref name="method"/>.</summary>
    static ClassificationHead OneClassPerImage(Head head, string method) => head as ClassificationHead is { Type: not LabelKind.MultiLabel } one ? one
        : throw new ArgumentException($"{method} pseudo-labels one class per image: it needs a multi-class, binary or " +
            $"ordinal classification head, not {head.Kind}"
            + (head is ClassificationHead c ? $" ({TaskTypes.Name(c.Type)})" : ""));
}
