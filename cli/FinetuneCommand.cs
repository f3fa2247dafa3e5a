using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Layouts;
using Medformer.Datasets.Transforms;
using Medformer.Heads;
using Medformer.Pretrain;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking;

namespace Medformer.Cli;

/// <summary><c>medformer finetune</c>: a pretrained model, a labelled corpus and a head; writes the fine-tuned model folder.</summary>
static class FinetuneCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "The pretrained model: a folder (config.json + model.safetensors) or a hub name.", Required = true };
        var task = new Option<string>("--task") { Description = "The labelled corpus: phantom[:2d|:3d], a MedMNIST subset name (pathmnist, …) or .npz file, mnist:FOLDER, msd:FOLDER (a Decathlon task: 70/10/20% of its labelled cases for training, validation, test) or petct:FOLDER[:IN:OUT] (PET studies, exposures IN s to OUT s, default 60 to 90; split likewise).", DefaultValueFactory = _ => "phantom" };
        var head = new Option<string?>("--head") { Description = "The head and its settings: classification[:pooling=flatten|mean|query|class_queries,label_smoothing=0.1,task=BANK], segmentation[:classes=K,pixel_context=3], restoration, super-resolution[:scale=2|4] or translation[:out_channels=C] (each with l1=, mse=, ssim=, data_range=). Default: segmentation for msd, restoration for petct, else classification." };
        var roiOption = new Option<string?>("--roi") { Description = "Dense heads: train on random crops of this size (e.g. 32,32,32 or 64) and score larger images by sliding windows of it (default 32³ for msd and petct)." };
        var strategy = new Option<string>("--strategy") { Description = "What trains: full, linear (the head only), last:K (the last K blocks), llrd:D (layer-wise learning-rate decay D).", DefaultValueFactory = _ => "full" };
        var fraction = new Option<double>("--fraction") { Description = "The fraction of the training labels to use, stratified by class, in (0, 1].", DefaultValueFactory = _ => 1.0 };
        var seed = new Option<long>("--seed") { Description = "Seed of the label draw and of every random draw of the run.", DefaultValueFactory = _ => 0 };
        var maxSteps = new Option<long>("--max-steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => 1000 };
        var batchSize = new Option<int>("--batch-size") { Description = "Samples per step.", DefaultValueFactory = _ => 64 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup then cosine).", DefaultValueFactory = _ => 1e-3 };
        var size = new Option<int?>("--size") { Description = "MedMNIST image size (28, 64, 128, 224)." };
        var mixup = new Option<double>("--mixup") { Description = "Mixup's α (classification): batches mixed with a permutation of themselves by λ ~ Beta(α, α), labels alike; 0 (default) is off.", DefaultValueFactory = _ => 0 };
        var ema = new Option<double>("--ema") { Description = "Decay of an exponential moving average of the weights (e.g. 0.999) that validation scores and the model folder keeps; 0 (default) is off.", DefaultValueFactory = _ => 0 };
        var noAugment = new Option<bool>("--no-augment") { Description = "Train without crops and flips." };
        var output = new Option<string>("--out") { Description = "Output folder: checkpoints and the fine-tuned model (model/). " + OutputOption.Rule, DefaultValueFactory = _ => Path.Combine("runs", "finetune") };
        var force = OutputOption.Force();
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => "cpu" };
        var precision = new Option<string>("--precision") { Description = "fp32, bf16 or fp16.", DefaultValueFactory = _ => "bf16" };
        var threads = new Option<int?>("--threads") { Description = "CPU threads for libtorch (default: all cores)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object (progress goes to stderr)." };
        var dba = DbaOption.Create();
        var selfTrain = SelfTrainOption.Create();
        var fixMatch = FixMatchOption.Create();
        var (trackingUri, experiment, runName) = Tracked.Options("finetune");
        var command = new Command("finetune", "Fine-tune a pretrained model with a task head on a labelled corpus; prints validation and test metrics and writes the model folder.");
        foreach (var option in new Option[] { checkpoint, task, head, roiOption, strategy, fraction, seed, maxSteps, batchSize, lr, size, mixup, ema, noAugment, output, force, device, precision, threads, json, dba, selfTrain, fixMatch, trackingUri, experiment, runName })
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output, force, "finetune");
            TorchRuntime.EnsureLoaded();
            if (parse.GetValue(threads) is { } n) TorchRuntime.SetThreads(n);
            bool asJson = parse.GetValue(json);
            double share = parse.GetValue(fraction);
            if (!(share > 0 && share <= 1)) throw new ArgumentException($"--fraction {share.ToString(CultureInfo.InvariantCulture)}: must be in (0, 1]");
            var chosen = Strategy.Parse(parse.GetValue(strategy)!);
            var data = DataSource.Parse(parse.GetValue(task)!, parse.GetValue(size));
            var options = new FineTuneOptions
            {
                MaxSteps = parse.GetValue(maxSteps), BatchSize = parse.GetValue(batchSize), LearningRate = parse.GetValue(lr), Seed = parse.GetValue(seed),
                Precision = PrecisionNames.Parse(parse.GetValue(precision)!), Device = DeviceSpec.Parse(parse.GetValue(device)!),
                OutputDirectory = parse.GetValue(output)!, Workers = 2, Mixup = parse.GetValue(mixup), Ema = parse.GetValue(ema), BatchAdaptation = DbaOption.Parse(parse.GetValue(dba), parse.GetValue(batchSize)),
            };
            // A missing model fails before anything is read or logged.
            string folder;
            try
            {
                folder = Pretrained.Resolve(parse.GetValue(checkpoint)!);
            }
            catch (IOException e)
            {
                Console.Error.WriteLine("medformer finetune: " + e.Message);
                return 1;
            }
            var roi = ParseRoi(parse.GetValue(roiOption));
            var selfTraining = SelfTrainOption.Parse(parse, selfTrain);
            if (selfTraining is not null && share == 1)
                throw new ArgumentException("--self-train: pseudo-labels go to the training images --fraction leaves out; with --fraction 1 there are none");
            var fixMatching = FixMatchOption.Parse(parse, fixMatch);
            if (fixMatching is not null && selfTraining is not null) throw new ArgumentException("--fixmatch and --self-train both use the unlabelled images after fine-tuning: pick one");
            if (fixMatching is not null && share == 1)
                throw new ArgumentException("--fixmatch: its unlabelled images are the training images --fraction leaves out; with --fraction 1 there are none");
            if (fixMatching is not null && options.Mixup > 0) throw new ArgumentException("--fixmatch and --mixup do not combine: pick one");
            // The precision on record is the one that will run here (bf16 falls back to fp32 on a CPU without fast bf16).
            var (ranPrecision, _) = MixedPrecision.Resolve(options.Precision, options.Device);
            claimed.Mark();
            using var tracked = Tracked.Start("finetune", options.OutputDirectory, parse.GetValue(trackingUri), parse.GetValue(experiment), parse.GetValue(runName));
            tracked?.LogParams(new Dictionary<string, object?>
            {
                ["checkpoint"] = parse.GetValue(checkpoint), ["task"] = parse.GetValue(task), ["head"] = parse.GetValue(head) ?? DefaultHead(data), ["roi"] = parse.GetValue(roiOption), ["strategy"] = chosen.ToString(),
                ["fraction"] = share, ["seed"] = options.Seed, ["max_steps"] = options.MaxSteps, ["batch_size"] = options.BatchSize,
                ["lr"] = options.LearningRate, ["precision"] = ranPrecision.Name(), ["precision_requested"] = options.Precision.Name(), ["device"] = parse.GetValue(device), ["augment"] = !parse.GetValue(noAugment), ["mixup"] = options.Mixup, ["ema"] = options.Ema,
                ["dba"] = DbaOption.Describe(options.BatchAdaptation), ["self_train"] = SelfTrainOption.Describe(selfTraining, options.MaxSteps),
                ["fixmatch"] = FixMatchOption.Describe(fixMatching, options.MaxSteps),
            });
            return Execute(parse.GetValue(checkpoint)!, folder, parse.GetValue(task)!, data, parse.GetValue(head), roi, chosen, share, options, !parse.GetValue(noAugment),
                selfTraining, fixMatching, asJson, tracked);
        });
        return command;
    }

    static int Execute(string checkpoint, string folder, string taskText, DataSource data, string? headText, long[]? roi, Strategy strategy, double fraction, FineTuneOptions options, bool augment,
        SelfTrainOption.Request? selfTraining, FixMatchOption.Request? fixMatching, bool asJson, MlflowRun? tracked)
    {
        using var interrupt = new Interruption();  // Ctrl-C or SIGTERM: stop at the next step boundary
        var progress = new ProgressLine(Console.IsOutputRedirected || asJson, "medformer finetune", asJson ? Console.Error : Console.Out);
        DataSplits? splits = null;
        FineTuner? student = null;
        try
        {
            splits = data.OpenSplits();
            var (trainSplit, validation, test) = (splits.Train, splits.Validation, splits.Test);
            headText ??= DefaultHead(data);
            var (kind, bank, settings) = HeadRegistry.ParseSpec(headText);
            var (classes, type, names) = Labels(trainSplit);
            if (kind == ClassificationHead.KindName)
            {
                settings.TryAdd("classes", classes);
                settings.TryAdd("type", TaskTypes.Name(type));
            }
            var train = LabelFraction.Draw(trainSplit, fraction, options.Seed);
            string? semi = selfTraining is not null ? "--self-train" : fixMatching is not null ? "--fixmatch" : null;
            var unlabelled = semi is null ? null
                : LabelFraction.Rest(trainSplit, train) ?? throw new ArgumentException($"{semi}: --fraction {fraction} leaves no training image of {trainSplit.Name} without its label");
            if (semi is not null && kind != ClassificationHead.KindName)
                throw new ArgumentException($"{semi}: pseudo-labels are classes; the {kind} head has none");
            using var sample = train.Get(0);
            if (kind != ClassificationHead.KindName)
            {
                // Dense heads: the corpus's dimensionality; an MSD task's classes from its dataset.json; the phantom's masks are one shape on background.
                settings.TryAdd("dimensionality", sample.Meta.Dimensionality.Name);
                if (kind == SegmentationHead.KindName && splits.Source switch { MsdCorpus m => m.Labels.Count, MedMnistCorpus { HasMasks: true } => 2, _ => 0 } is > 0 and var k)
                    settings.TryAdd("classes", k);
            }
            if (roi is null && splits.Source is MsdCorpus or PetCtCorpus) roi = DefaultVolumeRoi;
            if (roi is { Length: 1 }) roi = [.. Enumerable.Repeat(roi[0], sample.SpatialShape.Length)];
            if (roi is not null)
            {
                if (kind == ClassificationHead.KindName) throw new ArgumentException($"--roi: crops and sliding windows are for dense heads; the {kind} head reads whole images");
                options = options with { Roi = roi };
            }
            if (augment)
            {
                var spatial = sample.SpatialShape;
                options = options with
                {
                    Augment = spatial.Length == 2 && roi is null
                        ? new Compose([new RandResizedCrop(spatial, MinScale: 0.7), new RandFlip(0.5, [1])])
                        : new RandFlip(0.5, [spatial.Length - 1]),
                };
            }
            bank ??= HeadRegistry.DefaultTask(kind);
            FineTuner NewTuner()
            {
                var model = Pretrained.Load(folder, [bank]);
                try
                {
                    return new FineTuner(model, HeadRegistry.Create(kind, model.Config, bank, (JsonObject)settings.DeepClone()), strategy) { ClassNames = names };
                }
                catch
                {
                    model.Dispose();
                    throw;
                }
            }
            using var tuner = NewTuner();
            if (!asJson)
                Console.WriteLine($"fine-tuning {checkpoint} on {train.Name}: {train.Count} samples, head {kind} ({string.Join(", ", settings.Select(p => $"{p.Key}={p.Value}"))}), strategy {strategy}, {options.MaxSteps} steps of {options.BatchSize}");
            // Self-training rounds and FixMatch count their steps from 1 again; MLflow's step axis goes on after fine-tuning's.
            long stepOffset = 0, lastStep = 0;
            void Log(TrainerLog log)
            {
                if (log.Step + stepOffset <= lastStep) stepOffset = lastStep;
                lastStep = log.Step + stepOffset;
                progress.Show(log);
                tracked?.LogMetrics(Tracked.Metrics(log), lastStep);
            }
            var result = tuner.Fit(train, options, validation, Log, progress.Notice, interrupt.Token);
            progress.Done();
            SelfTrainingResult? selfTrained = null;
            if (selfTraining is not null)
            {
                var teacher = tuner.Evaluate(test);
                if (!asJson) Console.WriteLine($"teacher: test {Describe(teacher)}; self-training on {unlabelled!.Count} images without labels");
                tracked?.LogMetrics(teacher.Where(p => double.IsFinite(p.Value)).Select(p => KeyValuePair.Create("teacher_test_" + p.Key, p.Value)), lastStep);
                // student=pretrained: a new model and head from the checkpoint learn from the teacher's labels.
                student = selfTraining.FreshStudent ? NewTuner() : null;
                selfTrained = tuner.SelfTrain(train, unlabelled!, selfTraining.Options, options, validation, Log, progress.Notice, interrupt.Token, student);
                progress.Done();
                result = selfTrained.FineTuning;
            }
            if (fixMatching is not null)
            {
                var before = tuner.Evaluate(test);
                if (!asJson) Console.WriteLine($"fine-tuned: test {Describe(before)}; FixMatch with {unlabelled!.Count} images without labels");
                tracked?.LogMetrics(before.Where(p => double.IsFinite(p.Value)).Select(p => KeyValuePair.Create("fine_tuned_test_" + p.Key, p.Value)), lastStep);
                // Its own checkpoints and model beside the fine-tuned one (OUT/fixmatch/model).
                var semiOptions = options with { OutputDirectory = Path.Combine(options.OutputDirectory!, "fixmatch"), MaxSteps = fixMatching.Steps ?? options.MaxSteps };
                result = tuner.FixMatch(train, unlabelled!, fixMatching.Options, semiOptions, validation, Log, progress.Notice, interrupt.Token);
                progress.Done();
            }
            var testScores = (student ?? tuner).Evaluate(test);
            var t = result.Training;
            var say = asJson ? Console.Error : Console.Out;
            if (tracked is not null)
            {
                var scores = testScores.Select(p => KeyValuePair.Create("test_" + p.Key, p.Value))
                    .Concat((result.Validation ?? new Dictionary<string, double>()).Select(p => KeyValuePair.Create("val_" + p.Key, p.Value)))
                    .Where(p => double.IsFinite(p.Value));
                tracked.LogMetrics(scores, Math.Max(lastStep, t.Steps));
                tracked.SetTag("medformer.model", Path.GetFullPath(result.ModelDirectory!));
                tracked.LogArtifacts(result.ModelDirectory!, "model");
            }
            if (asJson)
            {
                var report = new JsonObject
                {
                    ["checkpoint"] = checkpoint, ["task"] = taskText, ["head"] = headText, ["strategy"] = strategy.ToString(), ["fraction"] = fraction,
                    ["seed"] = options.Seed, ["train_samples"] = train.Count, ["steps"] = t.Steps, ["final_loss"] = Finite(t.FinalLoss),
                    ["elapsed_seconds"] = Math.Round(t.Elapsed.TotalSeconds, 1),
                    ["validation"] = result.Validation is null ? null : Scores(result.Validation), ["test"] = Scores(testScores),
                    ["model"] = Path.GetFullPath(result.ModelDirectory!),
                };
                if (selfTrained is not null)
                    report["self_training"] = new JsonObject
                    {
                        ["settings"] = SelfTrainOption.Describe(selfTraining, options.MaxSteps),
                        ["pseudo_labelled"] = new JsonArray([.. selfTrained.Rounds.Select(r => (JsonNode)r.PseudoLabelled)]),
                        ["unlabelled"] = unlabelled!.Count,
                    };
                if (fixMatching is not null)
                    report["fixmatch"] = new JsonObject { ["settings"] = FixMatchOption.Describe(fixMatching, options.MaxSteps), ["unlabelled"] = unlabelled!.Count };
                if (options.BatchAdaptation is not null && t.History.LastOrDefault(l => l.BatchSize is not null) is { } adapted)
                    report["batch_adaptation"] = new JsonObject { ["settings"] = DbaOption.Describe(options.BatchAdaptation), ["batch_size"] = adapted.BatchSize, ["selected_size"] = adapted.SelectedSize };
                Console.WriteLine(report.ToJsonString());
            }
            else
            {
                Console.WriteLine($"fine-tuned {t.Steps} steps in {t.Elapsed:hh\\:mm\\:ss}; final loss {t.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)}");
                if (result.Validation is { } v) Console.WriteLine($"validation: {Describe(v)}");
                Console.WriteLine($"test: {Describe(testScores)}");
                Console.WriteLine($"model: {Path.GetFullPath(result.ModelDirectory!)}");
            }
            Tracked.End(tracked, RunStatus.Finished, "finetune", say);
            return 0;
        }
        catch (OperationCanceledException)
        {
            progress.Done();
            Console.Error.WriteLine("medformer finetune: interrupted");
            Tracked.End(tracked, RunStatus.Killed, "finetune", Console.Error);
            return interrupt.ExitCode;
        }
        catch (Exception e) when (e is TrainingDivergedException or InvalidDataException or IOException)
        {
            progress.Done();
            Console.Error.WriteLine("medformer finetune: " + e.Message);
            Tracked.End(tracked, RunStatus.Failed, "finetune", Console.Error, e.Message);
            return 1;
        }
        finally
        {
            student?.Dispose();
            splits?.Dispose();
        }
    }

    static readonly long[] DefaultVolumeRoi = [32, 32, 32];

    /// <summary>--roi "32,32,32" (or one size for every axis, "32", expanded by the head's dimensionality later).</summary>
    static long[]? ParseRoi(string? text)
    {
        if (text is null) return null;
        var sizes = text.Split(',').Select(p => long.TryParse(p.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 ? n
            : throw new ArgumentException($"--roi '{text}': expected positive sizes such as 32,32,32 (or 32 for every axis)")).ToArray();
        return sizes.Length is 1 or 2 or 3 ? sizes : throw new ArgumentException($"--roi '{text}': one size, or one per spatial axis (2 or 3)");
    }

    /// <summary>The head a task implies when --head is not given: masks are segmented, PET studies restored.</summary>
    static string DefaultHead(DataSource data) => data.Kind switch
    {
        DataKind.Msd => SegmentationHead.KindName,
        DataKind.PetCt => ImageToImageHead.Restoration,
        _ => ClassificationHead.KindName,
    };

    /// <summary>Classes, task type and class names of a MedMNIST-layout corpus (the phantom too) or an MNIST folder.</summary>
    static (int Classes, TaskType Type, IReadOnlyList<string> Names) Labels(ICorpus corpus) => corpus switch
    {
        MedMnistCorpus m => (m.Subset.Labels.Count, TaskTypes.Parse(m.Subset.Task), m.Subset.Labels),
        _ => (10, TaskType.MultiClass, [.. Enumerable.Range(0, 10).Select(i => i.ToString(CultureInfo.InvariantCulture))]),
    };

    static JsonObject Scores(IReadOnlyDictionary<string, double> scores) => new([.. scores.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)Finite(p.Value)))]);

    static JsonNode? Finite(double value) => double.IsFinite(value) ? JsonValue.Create(Math.Round(value, 6)) : null;

    static string Describe(IReadOnlyDictionary<string, double> scores) =>
        string.Join(", ", scores.Select(p => $"{p.Key} {(p.Key == "samples" ? p.Value.ToString("F0", CultureInfo.InvariantCulture) : p.Value.ToString("F4", CultureInfo.InvariantCulture))}"));
}
