using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Training;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// Fine-tunes a pretrained Medformer with a head, through the shared <see cref="Trainer"/>:
/// <code>
/// using var model = Pretrained.Load("runs/pretrain/model");              // a folder, or a hub name
/// var head = new ClassificationHead(model.Config, classes: 9, LabelKind.MultiClass, labelSmoothing: 0.1);
/// using var tuner = new FineTuner(model, head, Strategy.LayerwiseDecay(0.75));   // or Full, LinearProbe, LastBlocks(2)
/// var result = tuner.Fit(train, new FineTuneOptions { MaxSteps = 1000, OutputDirectory = "runs/ft" }, validation);
/// using var probabilities = tuner.Predict(images, metas);                 // [N,9]
/// </code>
/// The tuner owns the model and the head (disposing it disposes both). After <see cref="Fit"/> they hold the fp32
/// weights the run saved, so what <see cref="Predict"/> computes is what a reloaded model (<see cref="Load"/>) computes.
/// </summary>
public sealed class FineTuner : IDisposable
{
    private readonly FineTuneModule task;

    public FineTuner(MedformerModel model, Head head, Strategy? strategy = null)
    {
        Strategy = strategy ?? Strategy.Full;
        task = new FineTuneModule(model, head, Strategy, Describe);
    }

    public MedformerModel Model => task.Model;

    public Head Head => task.Head;

    public Strategy Strategy { get; }

    /// <summary>Names of the head's classes (saved in head.json; predict's CSV columns), when known.</summary>
    public IReadOnlyList<string>? ClassNames { get; set; }

    /// <summary>The intensities of the training images (set by <see cref="Fit"/>, kept in head.json; predict warns on inputs far from it); null:
    /// unknown.</summary>
    public InputRange? InputRange { get; set; }

    /// <summary>A training sample's image shape [C,H,W] or [C,D,H,W] (set by <see cref="Fit"/>; predict resizes inputs to it).</summary>
    public long[]? InputShape { get; set; }

    /// <summary>Trains on <paramref name="train"/>; scores <paramref name="validation"/> at the end (and every EvaluateEvery steps).</summary>
    public FineTuneResult Fit(ICorpus train, FineTuneOptions? options = null, ICorpus? validation = null, Action<TrainerLog>? log = null,
        Action<string>? notice = null, CancellationToken cancel = default) =>
        Fit(train, augment => [new LoaderSource(train, Transform: augment)], options, validation, log, notice, cancel);

    /// <summary>The model and head as the trainer's task (semi-supervised methods set its FixMatch options).</summary>
    internal FineTuneModule FineTuneModule => task;

    /// <summary>
    /// Fine-tuning on the loader sources <paramref name="sources"/> makes of the training augmentation (the labelled
    /// corpus alone, or mixed with pseudo-labelled or unlabelled images); <paramref name="loaderBatch"/> overrides the
    /// batch size of the loader (FixMatch's labelled plus unlabelled images).
    /// </summary>
    internal FineTuneResult Fit(ICorpus train, Func<ITransform?, IReadOnlyList<LoaderSource>> sources, FineTuneOptions? options, ICorpus? validation,
        Action<TrainerLog>? log, Action<string>? notice, CancellationToken cancel, int? loaderBatch = null)
    {
        options ??= new FineTuneOptions();
        if (options.Resume && options.OutputDirectory is null)
            throw new ArgumentException("resume: continuing needs the OutputDirectory whose checkpoints it continues from");
        var loaderSources = sources(Prepare(train, options, validation));
        var device = options.Device ?? task.Device;
        string output = options.OutputDirectory ?? Directory.CreateTempSubdirectory("medformer-finetune-").FullName;
        using var best = new BestWeights(options.SelectBest, options.SelectMode);
        try
        {
            var trainer = new Trainer(options.Trainer, device, notice);
            var result = trainer.Fit(task,
                start => new DataLoader(loaderSources, new LoaderOptions(loaderBatch ?? options.BatchSize, Seed: options.Seed,
                    Workers: options.Workers)).Batches(start),
                output, resume: options.Resume, log: log, evaluate: validation is null ? null : step => Check(validation, step, best), cancel: cancel);
            KeepWeights(result.ModelDirectory, options, best);
            return new FineTuneResult(options.OutputDirectory is null ? null : result.ModelDirectory, result, validation is null ? null : Evaluate(validation),
                best.Step);
        }
        finally
        {
            if (options.OutputDirectory is null) Directory.Delete(output, recursive: true);
        }
    }

    /// <summary>
    /// Checks <paramref name="options"/> against the head, sets the task's mixup and EMA, records the input shape
    /// (the training crop's with a ROI) and returns the training augmentation (the crop first, then the options').
    /// </summary>
    ITransform? Prepare(ICorpus train, FineTuneOptions options, ICorpus? validation)
    {
        if (validation is not null && Head.CreateMetric() is null)
            throw new ArgumentException($"{Head.GetType().Name} has no metric to score a validation corpus with");
        if (options.SelectMode is not ("max" or "min")) throw new ArgumentException($"select_mode '{options.SelectMode}': expected max or min");
        if (options.Mixup < 0 || double.IsNaN(options.Mixup) || double.IsInfinity(options.Mixup))
            throw new ArgumentException($"mixup α {options.Mixup} must be 0 (off) or positive");
        if (options.Mixup > 0 && Head.Output != HeadOutput.Probabilities)
            throw new ArgumentException($"mixup mixes class labels; the {Head.Kind} head predicts {Head.Output.ToString().ToLowerInvariant()}s");
        task.Mixup = options.Mixup;
        if (options.BrainFuse is { } brainFuse)
        {
            if (options.Mixup > 0) throw new ArgumentException($"{BrainFuseOptions.Flag} and --mixup both mix the batch: pick one");
            if (task.FixMatch is not null) throw new ArgumentException($"{BrainFuseOptions.Flag} and --fixmatch do not combine: pick one");
            BrainFuseMixing.Check(brainFuse, Head, options.BatchSize, options.BatchAdaptation);
        }
        task.BrainFuse = options.BrainFuse;
        if (options.Ema is < 0 or >= 1 || double.IsNaN(options.Ema)) throw new ArgumentException($"EMA decay {options.Ema} must be in [0, 1) (0: off)");
        task.Ema = options.Ema;
        var augment = options.Augment;
        InputRange = InputRange.Of(train);
        using (var first = train.Get(0))
        {
            InputShape = first.Image.shape;
            if (options.Roi is { } roi)
            {
                CheckRoi(roi, first.Meta.Dimensionality);
                InputShape = [first.Image.shape[0], .. roi];
                ITransform crop = new Compose([new SpatialPad(roi), new RandSpatialCrop(roi)]);
                augment = augment is null ? crop : new Compose([crop, augment]);
            }
        }
        if (options.SelectBest is not null && validation is null) throw new ArgumentException($"select_best '{options.SelectBest}' needs a validation corpus");
        return augment;
    }

    /// <summary>A validation check: the scores, and the weights kept where they are the best so far.</summary>
    IReadOnlyDictionary<string, double> Check(ICorpus validation, long step, BestWeights best)
    {
        // With an EMA, the averaged weights are what is scored and what the best check keeps.
        using var averaged = task.AveragedWeights();
        var scores = Evaluate(validation);
        best.Offer(step, scores, task.Module, Head.GetType().Name);
        return scores;
    }

    /// <summary>
    /// After training: the fp32 weights the run saved, then the EMA's averages or the best check's weights where
    /// they apply, and the model folder rewritten with them.
    /// </summary>
    void KeepWeights(string modelDirectory, FineTuneOptions options, BestWeights best)
    {
        // The trainer leaves the modules in its compute dtype; take back the fp32 weights it saved.
        task.Module.to(ScalarType.Float32);
        LoadWeights(modelDirectory);
        if (options.Ema > 0)
        {
            task.CopyAverages();
            if (!best.HasWeights && options.OutputDirectory is not null) Save(modelDirectory);
        }
        // The weights of the best check, as they were scored (in the compute dtype), and the model folder with them.
        if (best.CopyTo(task.Module) && options.OutputDirectory is not null) Save(modelDirectory);
    }

    /// <summary>
    /// The head's predictions (fp32, CPU) for images [N,C,…], in eval mode without gradients, <paramref name="chunk"/>
    /// at a time. <paramref name="metas"/> pick the organ and modality banks; by default "other".
    /// </summary>
    public Tensor Predict(Tensor images, IReadOnlyList<SampleMeta>? metas = null, int chunk = 256) =>
        InPieces(images, metas, chunk, task.Outputs);

    /// <summary>
    /// A dense head's predictions (fp32, CPU) for images [N,C,…] of any size, by sliding windows of
    /// <paramref name="roi"/> (the training crop, say; MONAI's sliding_window_inference, see <see cref="SlidingWindow"/>):
    /// the head's raw outputs (logits, images) are blended over overlapping windows, smaller images padded, then
    /// turned into predictions (masks, images). One image at a time; memory holds its output and one batch of windows.
    /// </summary>
    public Tensor PredictSlidingWindow(Tensor images, long[] roi, IReadOnlyList<SampleMeta>? metas = null, SlidingWindowOptions? options = null)
    {
        if (Head.Output == HeadOutput.Probabilities)
            throw new ArgumentException($"sliding windows blend dense outputs; the {Head.Kind} head gives one prediction per image (use Predict)");
        CheckRoi(roi, MedformerModel.DimensionalityOf(images));
        return InPieces(images, metas, 1, (x, meta) =>
            SlidingWindow.Infer(x, roi, windows => task.Outputs(windows, [.. Enumerable.Repeat(meta[0], (int)windows.shape[0])]), options));
    }

    /// <summary>
    /// The head's predictions (fp32, CPU) of <paramref name="outputs"/> over images [N,C,…], <paramref name="piece"/>
    /// images at a time (on the model's device and dtype), in eval mode without gradients. <paramref name="metas"/>
    /// pick the organ and modality banks; by default "other".
    /// </summary>
    Tensor InPieces(Tensor images, IReadOnlyList<SampleMeta>? metas, long piece, Func<Tensor, IReadOnlyList<SampleMeta>, Tensor> outputs)
    {
        var dims = MedformerModel.DimensionalityOf(images);
        metas ??= [.. Enumerable.Range(0, (int)images.shape[0]).Select(i => new SampleMeta("input", $"input[{i}]", i, "other", "other", dims, [], []))];
        if (metas.Count != images.shape[0]) throw new ArgumentException($"{metas.Count} metas for {images.shape[0]} images");
        bool training = task.Module.training;
        task.Module.eval();
        try
        {
            using var noGrad = torch.no_grad();
            var dtype = Model.parameters().First().dtype;
            var parts = new List<Tensor>();
            for (long start = 0; start < images.shape[0]; start += piece)
            {
                using var scope = NewDisposeScope();
                long count = Math.Min(piece, images.shape[0] - start);
                var x = images.narrow(0, start, count).to(task.Device).to(dtype);
                parts.Add(scope.MoveToOuter(Head.Predict(outputs(x, [.. metas.Skip((int)start).Take((int)count)])).to(ScalarType.Float32).cpu()));
            }
            var all = cat(parts);
            foreach (var p in parts) p.Dispose();
            return all;
        }
        finally
        {
            task.Module.train(training);
        }
    }

    /// <summary>A window (or training crop) of <paramref name="dims"/> images: one extent per axis, each a multiple of the patch size.</summary>
    void CheckRoi(long[] roi, Dimensionality dims)
    {
        int axes = dims.SpatialAxes, patch = dims.IsVolume ? Model.Config.PatchSize3d : Model.Config.PatchSize2d;
        if (roi.Length != axes || roi.Any(r => r < patch || r % patch != 0))
            throw new ArgumentException($"window [{string.Join(",", roi)}]: needs {axes} extents for {dims} images, each a " +
                $"positive multiple of the patch size {patch}");
    }

    /// <summary>
    /// The head's metric over one ordered pass of <paramref name="corpus"/> (e.g. accuracy and AUC, Dice, MSE). Dense
    /// heads score image by image: whole where an image has the training input's shape (<see cref="InputShape"/>),
    /// else by sliding windows of it, so volumes of any size are scored at their own size.
    /// </summary>
    public IReadOnlyDictionary<string, double> Evaluate(ICorpus corpus, int batchSize = 256)
    {
        var metric = Head.CreateMetric() ?? throw new InvalidOperationException($"{Head.GetType().Name} has no metric");
        if (Head.Output != HeadOutput.Probabilities)
        {
            // Images of the training shape in batches, any other one alone by sliding windows.
            var pending = new List<Sample>();
            void Flush()
            {
                if (pending.Count == 0) return;
                using (var batch = new Batch(0, [new BatchView(stack(pending.Select(p => p.Image)),
                    pending[0].Target is null ? null : stack(pending.Select(p => p.Target!)), null)],
                    [.. pending.Select(p => p.Meta)]))
                using (var predictions = PredictWhole(batch.Images, batch.Metas))
                    metric.Update(predictions, batch);
                foreach (var p in pending) p.Dispose();
                pending.Clear();
            }
            try
            {
                for (long i = 0; i < corpus.Count; i++)
                {
                    var sample = corpus.Get(i);
                    bool alone = InputShape is { } shape && !sample.Image.shape.SequenceEqual(shape);
                    if (pending.Count > 0 && (alone || !sample.Image.shape.SequenceEqual(pending[0].Image.shape))) Flush();
                    pending.Add(sample);
                    if (alone || pending.Count == batchSize) Flush();
                }
                Flush();
            }
            finally
            {
                foreach (var p in pending) p.Dispose();
            }
            return metric.Compute();
        }
        foreach (var batch in new DataLoader([new LoaderSource(corpus)], new LoaderOptions(batchSize, Workers: 1)).Pass())
            using (batch)
            using (var predictions = Predict(batch.Images, batch.Metas, batchSize))
                metric.Update(predictions, batch);
        return metric.Compute();
    }

    /// <summary>Dense predictions of images [N,C,…]: whole where they have the training input's shape, else by sliding windows of it.</summary>
    public Tensor PredictWhole(Tensor images, IReadOnlyList<SampleMeta>? metas = null, SlidingWindowOptions? options = null) =>
        InputShape is { } shape && !images.shape[2..].SequenceEqual(shape[1..])
            ? PredictSlidingWindow(images, shape[1..], metas, options)
            : Predict(images, metas);

    /// <summary>Writes the fine-tuned model: config.json, model.safetensors, head.safetensors and head.json (atomically).</summary>
    public void Save(string directory)
    {
        using var scope = NewDisposeScope();
        var weights = Model.state_dict().ToDictionary(p => p.Key, p => p.Value.detach());
        var head = Head.state_dict().ToDictionary(p => "head." + p.Key, p => p.Value.detach());
        Checkpoint.Save(Model.Config, weights, directory, extraFiles: task.ModelFiles(head));
    }

    /// <summary>A fine-tuned model folder (or hub name) with its head, as <see cref="Save"/> or <see cref="Fit"/> wrote it.</summary>
    public static FineTuner Load(string folderOrName, Device? device = null, Strategy? strategy = null)
    {
        string folder = Pretrained.Resolve(folderOrName);
        string headPath = Path.Combine(folder, FineTuneModule.HeadFile);
        if (!File.Exists(headPath))
            throw new InvalidDataException($"{folder}: no {FineTuneModule.HeadFile}: a pretrained model, not a fine-tuned one " +
                "(fine-tune it first: medformer finetune)");
        JsonObject description;
        try
        {
            description = JsonNode.Parse(File.ReadAllText(headPath)) as JsonObject ?? throw new InvalidDataException($"{headPath}: not a JSON object");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{headPath}: not valid JSON: {e.Message}", e);
        }
        string Field(string key) => HeadRegistry.Text(description, key) ?? throw new InvalidDataException($"{headPath}: '{key}' is missing");
        var settings = description["settings"] as JsonObject ?? throw new InvalidDataException($"{headPath}: 'settings' is missing or not an object");
        var model = Checkpoint.Load(folder);
        Head? head = null;
        try
        {
            head = HeadRegistry.Create(Field("kind"), model.Config, Field("task"), (JsonObject)settings.DeepClone());
            var tuner = new FineTuner(model, head, strategy)
            {
                ClassNames = description["class_names"] is JsonArray names ? [.. names.Select(n => n!.GetValue<string>())] : null,
                InputShape = description["input_shape"] is JsonArray shape ? [.. shape.Select(n => n!.GetValue<long>())] : null,
                InputRange = InputRange.FromJson(description["input_range"]),
            };
            LoadHeadWeights(head, Path.Combine(folder, FineTuneModule.HeadWeightsFile));
            if (device is not null) tuner.task.Module.to(device);
            return tuner;
        }
        catch
        {
            head?.Dispose();
            model.Dispose();
            throw;
        }
    }

    void LoadWeights(string folder)
    {
        Checkpoint.LoadWeights(Model, folder);
        LoadHeadWeights(Head, Path.Combine(folder, FineTuneModule.HeadWeightsFile));
    }

    /// <summary>head.safetensors into a head: every key present, of the head's shapes (<see cref="StrictLoad"/>).</summary>
    static void LoadHeadWeights(Head head, string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: missing (the head's weights)");
        StrictLoad.Load(path, head.state_dict(), $"this {head.GetType().Name}");
    }

    /// <summary>head.json: the head's kind, task bank and settings, the strategy it was tuned with, class names, input shape and intensity range.</summary>
    JsonObject Describe()
    {
        var description = new JsonObject
        {
            ["kind"] = Head.Kind,
            ["task"] = Head.Task,
            ["settings"] = Head.Settings(),
            ["output"] = Head.Output.ToString().ToLowerInvariant(),
            ["strategy"] = Strategy.ToString(),
        };
        if (ClassNames is not null) description["class_names"] = new JsonArray([.. ClassNames.Select(n => (JsonNode)n)]);
        if (InputShape is not null) description["input_shape"] = new JsonArray([.. InputShape.Select(n => (JsonNode)n)]);
        if (InputRange is not null) description["input_range"] = InputRange.ToJson();
        return description;
    }

    public void Dispose() => task.Dispose();
}