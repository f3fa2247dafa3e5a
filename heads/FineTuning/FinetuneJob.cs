using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Layouts;
using Medformer.Datasets.Transforms;
using Medformer.Runtime;
using Medformer.Training;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// The fine-tuning job, from a pretrained model and a labelled corpus to a fine-tuned model folder and its test
/// scores: the corpus's splits → the label fraction → the head (the task's default, its classes and dimensionality
/// from the corpus) → crops, windows and augmentation → <see cref="FineTuner.Fit"/>, then optionally self-training
/// or FixMatch on the images without labels (<see cref="SemiSupervised"/>). The CLI only parses arguments, shows
/// progress and logs to MLflow (through <see cref="FinetuneProgress"/> and the result).
/// <code>
/// var plan = FinetuneJob.Check(new FinetuneJobOptions { Checkpoint = "runs/pretrain/model", Task = DataSource.Parse("pathmnist"),
///     Fraction = 0.01, FineTune = new FineTuneOptions { MaxSteps = 500, OutputDirectory = "runs/ft" } });
/// var result = FinetuneJob.Run(plan);   // result.Test["auc"], result.FineTuning.ModelDirectory
/// </code>
/// </summary>
public static class FinetuneJob
{
    static readonly long[] DefaultVolumeRoi = [32, 32, 32];

    /// <summary>
    /// Everything about a job that can be wrong before it runs, checked without writing anything: the label fraction
    /// and the semi-supervised method it leaves images for, the pretrained model (a hub name is fetched), the
    /// precision on this machine. What depends on the corpus's samples (the head's kind against --roi, say) is
    /// checked by <see cref="Run(FinetunePlan, FinetuneProgress?, CancellationToken)"/> before it trains.
    /// </summary>
    public static FinetunePlan Check(FinetuneJobOptions options)
    {
        double share = options.Fraction;
        if (!(share > 0 && share <= 1)) throw new ArgumentException($"--fraction {share.ToString(CultureInfo.InvariantCulture)}: must be in (0, 1]");
        if (options.FineTune.OutputDirectory is null)
            throw new ArgumentException("a fine-tuning job writes its model folder: FineTuneOptions.OutputDirectory is required");
        if (options.SelfTraining is not null && share == 1)
            throw new ArgumentException("--self-train: pseudo-labels go to the training images --fraction leaves out; with --fraction 1 there are none");
        if (options.FixMatch is not null && options.SelfTraining is not null)
            throw new ArgumentException("--fixmatch and --self-train both use the unlabelled images after fine-tuning: pick one");
        if (options.FixMatch is not null && share == 1)
            throw new ArgumentException("--fixmatch: its unlabelled images are the training images --fraction leaves out; with --fraction 1 there are none");
        if (options.FixMatch is not null && options.FineTune.Mixup > 0) throw new ArgumentException("--fixmatch and --mixup do not combine: pick one");
        if (options.FineTune.BrainFuse is { } brainFuse)
        {
            brainFuse.Validate();
            if (options.FixMatch is not null) throw new ArgumentException($"{BrainFuseOptions.Flag} and --fixmatch do not combine: pick one");
            if (options.FineTune.Mixup > 0) throw new ArgumentException($"{BrainFuseOptions.Flag} and --mixup both mix the batch: pick one");
            if (options.FineTune.BatchSize < brainFuse.Parts)
                throw new ArgumentException($"{BrainFuseOptions.Flag}: parts={brainFuse.Parts} needs batches of at least {brainFuse.Parts} samples, not " +
                    $"--batch-size {options.FineTune.BatchSize}");
        }
        string? resumeFrom = null;
        if (options.FineTune.Resume)
        {
            if (options.SelfTraining is not null || options.FixMatch is not null)
                throw new ArgumentException("--resume continues the fine-tuning itself; with --self-train or --fixmatch run again without --resume");
            resumeFrom = TrainingCheckpoint.Latest(options.FineTune.OutputDirectory)
                ?? throw new ArgumentException($"--resume: no checkpoint in {options.FineTune.OutputDirectory} to resume from " +
                    "(a run interrupted before its first checkpoint has none: start it again without --resume)");
        }
        // A missing model or data fails before anything is read or logged.
        options.Task.Check("--task");
        string folder = Pretrained.Resolve(options.Checkpoint);
        // The precision on record is the one that will run here (bf16 falls back to fp32 on a CPU without fast bf16).
        var (precision, _) = MixedPrecision.Resolve(options.FineTune.Precision, options.FineTune.Device ?? DeviceSpec.Resolve(null));
        return new FinetunePlan(options, folder, options.Head ?? DefaultHead(options.Task), precision, resumeFrom,
            resumeFrom is null ? null : TrainingCheckpoint.RunIdOf(resumeFrom));
    }

    /// <summary>Checks <paramref name="options"/> and runs them.</summary>
    public static FinetuneJobResult Run(FinetuneJobOptions options, FinetuneProgress? progress = null, CancellationToken cancel = default) =>
        Run(Check(options), progress, cancel);

    /// <summary>
    /// Runs a checked job: fine-tunes, then self-trains or runs FixMatch where asked, and scores the model it ends
    /// with on the test split. Cancelling stops at the next step boundary (<see cref="OperationCanceledException"/>).
    /// </summary>
    public static FinetuneJobResult Run(FinetunePlan plan, FinetuneProgress? progress = null, CancellationToken cancel = default)
    {
        progress ??= new FinetuneProgress();
        var options = plan.Options;
        using var splits = options.Task.OpenSplits();
        var setup = Prepare(plan, splits);
        using var tuner = NewTuner(plan, setup);
        progress.Started?.Invoke(new FinetuneStart(setup.Train.Name, setup.Train.Count, setup.Kind, (JsonObject)setup.Settings.DeepClone(), options.Strategy,
            setup.FineTune.MaxSteps, setup.FineTune.BatchSize));
        var result = tuner.Fit(setup.Train, setup.FineTune, splits.Validation, progress.Log, progress.Notice, cancel);
        FineTuner? student = null;
        try
        {
            IReadOnlyList<PseudoLabelRound>? rounds = null;
            if (options.SelfTraining is { } selfTraining)
            {
                progress.SemiSupervised?.Invoke(new SemiSupervisedStart("self-training", tuner.Evaluate(splits.Test), setup.Unlabelled!.Count));
                // student=pretrained: a new model and head from the checkpoint learn from the teacher's labels.
                student = options.FreshStudent ? NewTuner(plan, setup) : null;
                var selfTrained = tuner.SelfTrain(setup.Train, setup.Unlabelled!, selfTraining, setup.FineTune, splits.Validation, progress.Log,
                    progress.Notice, cancel, student);
                (result, rounds) = (selfTrained.FineTuning, selfTrained.Rounds);
            }
            if (options.FixMatch is { } fixMatch)
            {
                progress.SemiSupervised?.Invoke(new SemiSupervisedStart("fixmatch", tuner.Evaluate(splits.Test), setup.Unlabelled!.Count));
                // Its own checkpoints and model beside the fine-tuned one (OUT/fixmatch/model).
                var semi = setup.FineTune with { OutputDirectory = Path.Combine(setup.FineTune.OutputDirectory!, "fixmatch"),
                    MaxSteps = options.FixMatchSteps ?? setup.FineTune.MaxSteps };
                result = tuner.FixMatch(setup.Train, setup.Unlabelled!, fixMatch, semi, splits.Validation, progress.Log, progress.Notice, cancel);
            }
            return new FinetuneJobResult(result, (student ?? tuner).Evaluate(splits.Test), setup.Train.Count, setup.Unlabelled?.Count, rounds);
        }
        finally
        {
            student?.Dispose();
        }
    }

    /// <summary>The head a task implies when none is given: masks are segmented, PET studies restored, the rest classified.</summary>
    public static string DefaultHead(DataSource data) => data.Kind switch
    {
        DataKind.Msd => SegmentationHead.KindName,
        DataKind.PetCt => ImageToImageHead.Restoration,
        _ => ClassificationHead.KindName,
    };

    /// <summary>The labelled images drawn, the unlabelled rest, the head's kind, task bank and settings, and the fine-tuning options, all from the
    /// corpus.</summary>
    sealed record Setup(ICorpus Train, ICorpus? Unlabelled, string Kind, string Bank, JsonObject Settings, IReadOnlyList<string> ClassNames,
        FineTuneOptions FineTune);

    static Setup Prepare(FinetunePlan plan, DataSplits splits)
    {
        var options = plan.Options;
        var (kind, bank, settings) = HeadRegistry.ParseSpec(plan.Head);
        var (classes, type, names) = Labels(splits.Train);
        if (kind == ClassificationHead.KindName)
        {
            settings.TryAdd("classes", classes);
            settings.TryAdd("type", TaskTypes.Name(type));
        }
        var train = LabelFraction.Draw(splits.Train, options.Fraction, options.FineTune.Seed);
        var unlabelled = Unlabelled(options, splits.Train, train, kind);
        using var sample = train.Get(0);
        if (kind != ClassificationHead.KindName)
        {
            // Dense heads: the corpus's dimensionality; an MSD task's classes from its dataset.json; the phantom's masks are one shape on background.
            settings.TryAdd("dimensionality", sample.Meta.Dimensionality.Name);
            if (kind == SegmentationHead.KindName && splits.Source switch { MsdCorpus m => m.Labels.Count, MedMnistCorpus { HasMasks: true } => 2,
                _ => 0 } is > 0 and var k)
                settings.TryAdd("classes", k);
        }
        return new Setup(train, unlabelled, kind, bank ?? HeadRegistry.DefaultTask(kind), settings, names, Training(options, kind, sample, splits.Source));
    }

    /// <summary>The training images --fraction leaves out, for self-training or FixMatch (null when neither runs).</summary>
    static ICorpus? Unlabelled(FinetuneJobOptions options, ICorpus trainSplit, ICorpus train, string kind)
    {
        string? semi = options.SelfTraining is not null ? "--self-train" : options.FixMatch is not null ? "--fixmatch" : null;
        if (semi is null) return null;
        var unlabelled = LabelFraction.Rest(trainSplit, train)
            ?? throw new ArgumentException($"{semi}: --fraction {options.Fraction} leaves no training image of {trainSplit.Name} without its label");
        if (kind != ClassificationHead.KindName) throw new ArgumentException($"{semi}: pseudo-labels are classes; the {kind} head has none");
        return unlabelled;
    }

    /// <summary>The fine-tuning options with the crop size (dense heads; 32³ for MSD and PET by default) and the augmentation.</summary>
    static FineTuneOptions Training(FinetuneJobOptions options, string kind, Sample sample, ICorpus source)
    {
        var fineTune = options.FineTune;
        var roi = options.Roi;
        if (roi is null && source is MsdCorpus or PetCtCorpus) roi = DefaultVolumeRoi;
        if (roi is { Length: 1 }) roi = [.. Enumerable.Repeat(roi[0], sample.SpatialShape.Length)];
        if (roi is not null)
        {
            if (kind == ClassificationHead.KindName)
                throw new ArgumentException($"--roi: crops and sliding windows are for dense heads; the {kind} head reads whole images");
            fineTune = fineTune with { Roi = roi };
        }
        if (!options.Augment) return fineTune;
        var spatial = sample.SpatialShape;
        return fineTune with
        {
            Augment = spatial.Length == 2 && roi is null
                ? new Compose([new RandResizedCrop(spatial, MinScale: 0.7), new RandFlip(0.5, [1])])
                : new RandFlip(0.5, [spatial.Length - 1]),
        };
    }

    /// <summary>A new model from the checkpoint with a new head of the job's kind and settings (the caller owns it).</summary>
    static FineTuner NewTuner(FinetunePlan plan, Setup setup)
    {
        var model = Pretrained.Load(plan.ModelFolder, [setup.Bank]);
        try
        {
            return new FineTuner(model, HeadRegistry.Create(setup.Kind, model.Config, setup.Bank, (JsonObject)setup.Settings.DeepClone()),
                plan.Options.Strategy)
            {
                ClassNames = setup.ClassNames,
            };
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>Classes, task type and class names of a MedMNIST-layout corpus (the phantom too) or an MNIST folder.</summary>
    static (int Classes, LabelKind Type, IReadOnlyList<string> Names) Labels(ICorpus corpus) => corpus switch
    {
        MedMnistCorpus m => (m.Subset.Labels.Count, TaskTypes.Parse(m.Subset.Task), m.Subset.Labels),
        _ => (10, LabelKind.MultiClass, [.. Enumerable.Range(0, 10).Select(i => i.ToString(CultureInfo.InvariantCulture))]),
    };
}
