using Medformer.Datasets.Corpora;
using Medformer.Runtime;

namespace Medformer.Eval.Protocols;

/// <summary>
/// A labelled data set for a protocol: training, validation (optional) and test corpora, the task type
/// (<see cref="Vocabulary.Tasks"/>), the class count, and each training sample's class for stratified draws
/// (<see cref="TrainStrata"/>; 0 for every sample of a multi-label task). Disposes the corpora it opened.
/// </summary>
public sealed class EvaluationData : IDisposable
{
    readonly IDisposable[] owned;

    public EvaluationData(string name, ICorpus train, ICorpus? validation, ICorpus test, string task, int classes, IEnumerable<IDisposable>? owned = null)
    {
        if (!ClassificationMetricsTasks.Contains(task)) throw new ArgumentException($"{name}: task '{task}' is not one of {string.Join(", ", ClassificationMetricsTasks)}");
        if (train.Count == 0 || test.Count == 0) throw new ArgumentException($"{name}: the training and test splits must not be empty");
        Name = name;
        Train = train;
        Validation = validation is { Count: > 0 } ? validation : null;
        Test = test;
        Task = task;
        Classes = classes;
        this.owned = [.. owned ?? []];
        TrainStrata = task == "multi-label" ? new long[train.Count] : Labels(train);
    }

    public string Name { get; }
    public ICorpus Train { get; }
    public ICorpus? Validation { get; }
    public ICorpus Test { get; }
    public string Task { get; }
    public int Classes { get; }
    public IReadOnlyList<long> TrainStrata { get; }

    static IReadOnlyList<string> ClassificationMetricsTasks => Metrics.ClassificationMetrics.TaskTypes;

    /// <summary>The embedded phantom corpus (generated on first use): 10 classes of shapes and textures.</summary>
    public static EvaluationData Phantom(PhantomSpec spec, string? folder = null) =>
        Npz(Datasets.Corpora.Phantom.Ensure(spec, folder), Datasets.Corpora.Phantom.Subset(spec));

    /// <summary>A MedMNIST subset by name from $MEDFORMER_HOME/medmnist (medformer download medmnist NAME puts it there).</summary>
    public static EvaluationData MedMnist(string name, int size = 28)
    {
        var subset = MedMnistRegistry.Default.Get(name);
        string path = Path.Combine(MedformerHome.Path, "medmnist", subset.FileName(size));
        if (!File.Exists(path)) throw new ArgumentException($"{path}: missing; fetch it with: medformer download medmnist {subset.Name}{(size == 28 ? "" : $" --size {size}")}");
        return Npz(path, subset);
    }

    /// <summary>A file in MedMNIST's .npz layout (train/val/test splits); its subset from its name unless given.</summary>
    public static EvaluationData Npz(string path, MedMnistSubset? subset = null)
    {
        if (!File.Exists(path)) throw new ArgumentException($"{path}: no such file (a MedMNIST-layout .npz)");
        var opened = new List<MedMnistCorpus>();
        try
        {
            foreach (string split in MedMnistCorpus.SplitNames) opened.Add(MedMnistCorpus.Open(path, split, subset));
            var s = opened[0].Subset;
            return new EvaluationData(s.Name, opened[0], opened[1], opened[2], s.Task, s.Task == "binary-class" ? 2 : s.Labels.Count, opened);
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
            return new EvaluationData(Path.GetFileName(Path.TrimEndingDirectorySeparator(Path.GetFullPath(folder))), train, null, test, "multi-class", 10, [train, test]);
        }
        catch
        {
            train.Dispose();
            throw;
        }
    }

    /// <summary>Each sample's first label (the class of a single-label task).</summary>
    static long[] Labels(ICorpus corpus)
    {
        var labels = new long[corpus.Count];
        for (long i = 0; i < corpus.Count; i++)
        {
            using var sample = corpus.Get(i);
            labels[i] = sample.Meta.Labels.Length >= 1 ? sample.Meta.Labels[0] : throw new ArgumentException($"{sample.Meta}: unlabelled; a protocol needs labels");
        }
        return labels;
    }

    public void Dispose()
    {
        foreach (var d in owned) d.Dispose();
    }
}
