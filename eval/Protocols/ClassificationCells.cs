using System.Diagnostics;
using System.Globalization;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Eval.Metrics;
using Medformer.Heads;
using Medformer.Pretrain.Training;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Eval.Protocols;

/// <summary>How a classification cell fine-tunes: the trainer's settings and the head.</summary>
/// <param name="Evaluations">Validation checks over the run (every MaxSteps / Evaluations steps, and at the end).</param>
/// <param name="Selection">The validation metric that picks the step: "auc" (MedMNIST's model selection) or "acc".</param>
public sealed record FineTuneSettings(
    long MaxSteps = 300,
    double LearningRate = 1e-3,
    int BatchSize = 32,
    int Evaluations = 10,
    Precision Precision = Precision.Bf16,
    Pooling Pooling = Pooling.Flatten,
    string Selection = "auc",
    int Workers = 1)
{
    public void Validate()
    {
        if (MaxSteps < 1) throw new ArgumentException($"--max-steps {MaxSteps} must be at least 1");
        if (!(LearningRate > 0)) throw new ArgumentException($"--lr {LearningRate} must be positive");
        if (BatchSize < 1) throw new ArgumentException($"--batch-size {BatchSize} must be at least 1");
        if (Evaluations < 1) throw new ArgumentException($"evaluations {Evaluations} must be at least 1");
        if (Selection is not ("auc" or "acc")) throw new ArgumentException($"selection metric '{Selection}': expected auc or acc");
    }
}

/// <summary>
/// A classification cell: fine-tunes the whole Medformer with a <see cref="ClassificationTask"/> head through the
/// shared <see cref="Trainer"/> (AdamW, warmup then cosine), checks the validation set every few steps and keeps
/// the weights of the best check (by <see cref="FineTuneSettings.Selection"/>), then scores the test set with
/// MedMNIST's ACC and AUC for the data's task type. A random initialisation builds <c>randomConfig</c> from the
/// seed; a pretrained one loads its model folder. Multi-class, binary-class and ordinal-regression tasks (one label
/// per sample, cross-entropy); multi-label needs a multi-label head.
/// </summary>
public sealed class ClassificationCells : ICellTrainer, IDisposable
{
    readonly EvaluationData data;
    readonly FineTuneSettings settings;
    readonly MedformerConfig randomConfig;
    readonly Device device;
    readonly Action<TrainerLog>? progress;
    (Tensor Images, Tensor Labels, IReadOnlyList<SampleMeta> Metas)? test;

    public ClassificationCells(EvaluationData data, FineTuneSettings settings, MedformerConfig randomConfig, Device? device = null, Action<TrainerLog>? progress = null)
    {
        settings.Validate();
        if (data.Task == "multi-label")
            throw new ArgumentException($"{data.Name} is multi-label: fine-tuning here trains one label per sample (cross-entropy); multi-label needs a multi-label head");
        this.data = data;
        this.settings = settings;
        this.randomConfig = randomConfig;
        this.device = device ?? CPU;
        this.progress = progress;
    }

    public IReadOnlyList<MetricInfo> Metrics { get; } = [new("acc", "ACC"), new("auc", "AUC")];

    public IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["data"] = data.Name,
        ["task"] = data.Task,
        ["head"] = $"classification, {settings.Pooling.ToString().ToLowerInvariant()} pooling",
        ["max_steps"] = settings.MaxSteps.ToString(CultureInfo.InvariantCulture),
        ["lr"] = settings.LearningRate.ToString("R", CultureInfo.InvariantCulture),
        ["batch_size"] = settings.BatchSize.ToString(CultureInfo.InvariantCulture),
        ["evaluations"] = settings.Evaluations.ToString(CultureInfo.InvariantCulture),
        ["precision"] = settings.Precision.ToString().ToLowerInvariant(),
        ["selection"] = settings.Selection,
        ["random_config"] = System.Text.Json.JsonSerializer.Serialize(randomConfig, new System.Text.Json.JsonSerializerOptions(MedformerConfig.Json) { WriteIndented = false }),
    };

    public CellResult Train(CellPlan plan, CancellationToken cancel = default)
    {
        var clock = Stopwatch.StartNew();
        var key = plan.Key;
        test ??= Stack(data.Test, [.. Enumerable.Range(0, (int)data.Test.Count)]);
        var (valImages, valLabels, valMetas) = Stack(plan.Validation, plan.ValidationIndices);
        using var _v = valImages;
        using var _l = valLabels;
        Seeding.SeedEverything(1000 + key.Seed);
        var model = plan.Init.Checkpoint is { } folder ? Checkpoint.Load(folder) : new Medformer(randomConfig);
        using var task = new ClassificationTask(model, data.Classes, settings.Pooling);
        var train = new SubsetCorpus(data.Train, plan.TrainIndices, $"{data.Train.Name}/labelled");
        int batch = Math.Min(settings.BatchSize, plan.TrainIndices.Length);
        long every = Math.Max(1, settings.MaxSteps / settings.Evaluations);
        var trainer = new Trainer(new TrainerOptions
        {
            MaxSteps = settings.MaxSteps, LearningRate = settings.LearningRate, MinLearningRate = settings.LearningRate / 100,
            WarmupSteps = Math.Min(20, settings.MaxSteps / 5), WeightDecay = 0.05, Precision = settings.Precision, Seed = key.Seed,
            LogEvery = (int)Math.Max(1, Math.Min(10, settings.MaxSteps / 10)), EvaluateEvery = every,
        }, device);

        var loss = new List<CurvePoint>();
        var validation = new List<CurvePoint>();
        Dictionary<string, Tensor>? best = null;
        double bestValue = double.NegativeInfinity;
        long bestStep = 0;
        IReadOnlyDictionary<string, double> Evaluate(long step)
        {
            var scores = Score(task, valImages, valLabels, valMetas);
            double value = scores[settings.Selection];
            validation.Add(new CurvePoint(step, value));
            if (value > bestValue)
            {
                (bestValue, bestStep) = (value, step);
                Release(best);
                best = task.Module.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().cpu().clone());
            }
            return scores;
        }

        string output = Directory.CreateTempSubdirectory("medformer-eval-cell-").FullName;
        try
        {
            trainer.Fit(task, start => new DataLoader([new LoaderSource(train)], new LoaderOptions(batch, Seed: key.Seed, Workers: settings.Workers)).Batches(start),
                output, log: entry =>
                {
                    loss.Add(new CurvePoint(entry.Step, entry.Loss));
                    progress?.Invoke(entry);
                }, evaluate: Evaluate, cancel: cancel);
            using (torch.no_grad())
            {
                var state = task.Module.state_dict();
                foreach (var (name, value) in best!) state[name].copy_(value);
            }
            var metrics = Score(task, test.Value.Images, test.Value.Labels, test.Value.Metas);
            return new CellResult(key.Init, key.Fraction, key.Seed, plan.TrainIndices.Length, metrics, settings.Selection, bestStep, bestValue,
                clock.Elapsed.TotalSeconds, loss, validation);
        }
        finally
        {
            Release(best);
            Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>MedMNIST's ACC and AUC of the task's predictions on stacked images.</summary>
    Dictionary<string, double> Score(ClassificationTask task, Tensor images, Tensor labels, IReadOnlyList<SampleMeta> metas)
    {
        using var probabilities = task.PredictProbabilities(images, metas);
        return new Dictionary<string, double>
        {
            ["acc"] = ClassificationMetrics.Accuracy(probabilities, labels, data.Task),
            ["auc"] = ClassificationMetrics.Auc(probabilities, labels, data.Task),
        };
    }

    static void Release(Dictionary<string, Tensor>? state)
    {
        if (state is null) return;
        foreach (var t in state.Values) t.Dispose();
    }

    /// <summary>The samples at <paramref name="indices"/> as one tensor [N,C,…], their first labels [N] and metas.</summary>
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
        return (scope.MoveToOuter(stack(images)), scope.MoveToOuter(tensor(metas.Select(m => m.Labels[0]).ToArray())), metas);
    }

    public void Dispose()
    {
        test?.Images.Dispose();
        test?.Labels.Dispose();
        test = null;
    }
}
