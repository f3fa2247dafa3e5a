using Medformer.Runtime;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Eval.Metrics;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Eval.Protocols;

/// <summary>
/// A classification cell: fine-tunes the whole Medformer with a <see cref="ClassificationHead"/> for the data's task
/// type (multi-class, multi-label, binary-class, ordinal-regression) through the <see cref="FineTuner"/>, checks the
/// validation set every few steps and keeps the weights of the best check (by <see cref="FineTuneSettings.Selection"/>),
/// then scores the test set with MedMNIST's ACC and AUC (<see cref="ClassificationMetrics"/>). A random
/// initialisation builds <c>randomConfig</c> from the seed; a pretrained one loads its model folder (or hub name).
/// </summary>
public sealed class ClassificationCells : ICellTrainer, IDisposable
{
    const string TaskBank = "classification";

    readonly EvaluationData data;
    readonly FineTuneSettings settings;
    readonly MedformerConfig randomConfig;
    readonly Device device;
    readonly Action<TrainerLog>? progress;
    (Tensor Images, Tensor Labels, IReadOnlyList<SampleMeta> Metas)? test;

    public ClassificationCells(EvaluationData data, FineTuneSettings settings, MedformerConfig randomConfig, Device? device = null,
        Action<TrainerLog>? progress = null)
    {
        settings.Validate();
        if (data.Task is null)
            throw new ArgumentException($"{data.Name}: its samples have no class labels to classify (a segmentation or restoration data " +
                "set: --head segmentation or restoration)");
        if (settings.Selection is not (null or "auc" or "acc"))
            throw new ArgumentException($"--select '{settings.Selection}': a classification run is chosen by auc or acc");
        if (settings.FineTune.Roi is not null)
            throw new ArgumentException("--roi: crops and sliding windows are for dense heads; a classification head reads whole images");
        this.data = data;
        this.settings = settings;
        this.randomConfig = Pretrained.WithTasks(randomConfig, [TaskBank]);
        this.device = device ?? DeviceSpec.Resolve(null);
        this.progress = progress;
    }

    public IReadOnlyList<MetricInfo> Metrics { get; } = [new("acc", "ACC"), new("auc", "AUC")];

    public IReadOnlyDictionary<string, string> Settings => CellFineTuning.Settings(data.Name, settings, Selection, randomConfig,
        ("task", data.Task!), ("head", $"classification, {settings.Pooling.ToString().ToLowerInvariant()} pooling, full fine-tuning"));

    public CellResult Train(CellPlan plan, CancellationToken cancel = default)
    {
        if (plan.Init == Initialisation.GaussianFilter)
            throw new ArgumentException("the Gaussian filter baseline is a restoration row; a classification protocol compares " +
                "random and pretrained initialisations");
        test ??= Stack(data.Test, [.. Enumerable.Range(0, (int)data.Test.Count)]);
        var (images, labels, metas) = test.Value;
        using var tuner = CellFineTuning.Tuner(plan, TaskBank, randomConfig,
            config => new ClassificationHead(config, data.Classes, TaskTypes.Parse(data.Task!), settings.Pooling));
        return CellFineTuning.Run(tuner, data, plan, settings, HeadMetricName, "max", Selection, device, progress, () =>
        {
            using var probabilities = tuner.Predict(images, metas);
            return new Dictionary<string, double>
            {
                ["acc"] = ClassificationMetrics.Accuracy(probabilities, labels, data.Task!),
                ["auc"] = ClassificationMetrics.Auc(probabilities, labels, data.Task!),
            };
        }, cancel);
    }

    /// <summary>The head metric's name for the selection metric.</summary>
    string HeadMetricName => Selection == "acc" ? "accuracy" : "auc";

    string Selection => settings.Selection ?? "auc";

    /// <summary>The samples at <paramref name="indices"/> as one tensor [N,C,…], their labels ([N], or [N,L] for multi-label) and metas.</summary>
    static (Tensor Images, Tensor Labels, IReadOnlyList<SampleMeta> Metas) Stack(ICorpus corpus, IReadOnlyList<int> indices)
    {
        if (indices.Count == 0) throw new ArgumentException($"{corpus.Name}: no samples to score");
        using var scope = NewDisposeScope();
        var images = new List<Tensor>();
        var metas = new List<SampleMeta>();
        foreach (int i in indices)
        {
            var sample = corpus.Get(i);  // its tensors belong to the scope
            images.Add(sample.Image);
            metas.Add(sample.Meta);
        }
        var labels = tensor(metas.SelectMany(m => m.Labels).ToArray()).reshape(metas.Count, -1);
        return (scope.MoveToOuter(stack(images)), scope.MoveToOuter(labels), metas);
    }

    public void Dispose()
    {
        test?.Images.Dispose();
        test?.Labels.Dispose();
        test = null;
    }
}
