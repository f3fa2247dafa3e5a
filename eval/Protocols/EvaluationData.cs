using Medformer.Datasets.Corpora;
using Medformer.Datasets.Layouts;
using Medformer.Runtime;

namespace Medformer.Eval.Protocols;

/// <summary>
/// A labelled data set for a protocol: training, validation (optional) and test corpora; for classification the task
/// type (<see cref="Vocabulary.Tasks"/>) and class count, null and 0 where samples carry no class labels; for the
/// dense heads what the samples' targets are (<see cref="MaskClasses"/> label maps, or target images); and each
/// training sample's class for stratified draws (<see cref="TrainStrata"/>; 0 for every sample of a multi-label or
/// unlabelled set). Disposes the corpora it opened.
/// </summary>
public sealed class EvaluationData : IDisposable
{
    readonly IDisposable[] owned;

    public EvaluationData(string name, ICorpus train, ICorpus? validation, ICorpus test, string? task, int classes, IEnumerable<IDisposable>? owned = null,
        int maskClasses = 0, bool imageTargets = false)
    {
        if (task is not null && !ClassificationMetricsTasks.Contains(task))
            throw new ArgumentException($"{name}: task '{task}' is not one of {string.Join(", ", ClassificationMetricsTasks)}");
        if (train.Count == 0 || test.Count == 0) throw new ArgumentException($"{name}: the training and test splits must not be empty");
        Name = name;
        Train = train;
        Validation = validation is { Count: > 0 } ? validation : null;
        Test = test;
        Task = task;
        Classes = classes;
        MaskClasses = maskClasses;
        ImageTargets = imageTargets;
        this.owned = [.. owned ?? []];
        TrainStrata = task is null or "multi-label" ? new long[train.Count] : Labels(train);
    }

    public string Name { get; }
    public ICorpus Train { get; }
    public ICorpus? Validation { get; }
    public ICorpus Test { get; }
    /// <summary>The classification task type; null where the samples have no class labels.</summary>
    public string? Task { get; }
    public int Classes { get; }
    /// <summary>Classes of the samples' label maps (background included) for segmentation; 0 without masks.</summary>
    public int MaskClasses { get; }
    /// <summary>Whether the samples' targets are images (restoration, translation, super-resolution pairs).</summary>
    public bool ImageTargets { get; }
    public IReadOnlyList<long> TrainStrata { get; }

    static IReadOnlyList<string> ClassificationMetricsTasks => Metrics.ClassificationMetrics.TaskTypes;

    /// <summary>The embedded phantom corpus (generated on first use): 10 classes of shapes and textures.</summary>
    public static EvaluationData Phantom(PhantomSpec spec, string? folder = null) =>
        Npz(Datasets.Corpora.Phantom.Ensure(spec, folder), Datasets.Corpora.Phantom.Subset(spec));

    /// <summary>The labelled data a <see cref="DataSource"/> names, with the class and target information its kind gives.</summary>
    public static EvaluationData Open(DataSource source) => source.Kind switch
    {
        DataKind.Phantom => Phantom(source.PhantomSpec()),
        DataKind.MedMnist => Npz(source.MedMnistFile("--task"), source.SubsetInfo()),
        DataKind.Mnist => Mnist(source.Source),
        DataKind.Msd => Msd(source.Source),
        DataKind.PetCt => PetCt(source.Source, source.InputSeconds, source.TargetSeconds),
        _ => throw new ArgumentException($"--task: {source} cannot be evaluated"),
    };

    /// <summary>A file in MedMNIST's .npz layout (train/val/test splits); its subset from its name unless given.</summary>
    public static EvaluationData Npz(string path, MedMnistSubset? subset = null)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: no such file (a MedMNIST-layout .npz)");
        var opened = new List<MedMnistCorpus>();
        try
        {
            foreach (string split in MedMnistCorpus.SplitNames) opened.Add(MedMnistCorpus.Open(path, split, subset));
            var s = opened[0].Subset;
            // The phantom's masks are one shape on background.
            return new EvaluationData(s.Name, opened[0], opened[1], opened[2], s.Task, s.Task == "binary-class" ? 2 : s.Labels.Count, opened,
                maskClasses: opened[0].HasMasks ? 2 : 0);
        }
        catch
        {
            foreach (var c in opened) c.Dispose();
            throw;
        }
    }

    /// <summary>An MNIST-layout folder (train and test, 10 classes; no validation split: the protocol holds some out).</summary>
    public static EvaluationData Mnist(string folder)
    {
        if (!Directory.Exists(folder)) throw new ArgumentException($"{folder}: no such folder (an MNIST-layout folder)");
        var train = MnistCorpus.Open(folder, "train");
        try
        {
            var test = MnistCorpus.Open(folder, "test");
            return new EvaluationData(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder))), train, null, test, "multi-class", 10,
                [train, test]);
        }
        catch
        {
            train.Dispose();
            throw;
        }
    }

    /// <summary>A Medical Segmentation Decathlon task's labelled cases, split by <see cref="HoldOut"/> (its imagesTs have no labels).</summary>
    public static EvaluationData Msd(string folder)
    {
        var corpus = new MsdCorpus(folder);
        var split = HoldOut.Split(corpus);
        return new EvaluationData(corpus.Name, split.Train, split.Validation, split.Test, null, 0, maskClasses: corpus.Labels.Count);
    }

    /// <summary>PET studies (<see cref="PetCtCorpus"/>: pet_INs restored to pet_OUTs), split by <see cref="HoldOut"/>.</summary>
    public static EvaluationData PetCt(string folder, int inputSeconds = 60, int targetSeconds = 90)
    {
        var corpus = new PetCtCorpus(folder, inputSeconds, targetSeconds);
        var split = HoldOut.Split(corpus);
        return new EvaluationData(corpus.Name, split.Train, split.Validation, split.Test, null, 0, imageTargets: true);
    }

    /// <summary>Each sample's first label (the class of a single-label task).</summary>
    static long[] Labels(ICorpus corpus)
    {
        var labels = new long[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            using var sample = corpus.Get(i);
            labels[i] = sample.Meta.Labels.Length >= 1 ? sample.Meta.Labels[0] :
                throw new ArgumentException($"{sample.Meta}: unlabelled; a protocol needs labels");
        }
        return labels;
    }

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
    }
}
