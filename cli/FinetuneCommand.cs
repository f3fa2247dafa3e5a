using System.CommandLine;
using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking;

namespace Medformer.Cli;

/// <summary><c>medformer finetune</c>: a pretrained model, a labelled corpus and a head; writes the fine-tuned model folder.</summary>
static class FinetuneCommand
{
    public static Command Create()
    {
        var data = DataOptions.Create();
        var training = TrainingOptions.Create();
        var output = OutputOptions.Create();
        var methods = MethodOptions.Create();
        var (trackingUri, experiment, runName) = Tracked.Options("finetune");
        var command = new Command("finetune",
            "Fine-tune a pretrained model with a task head on a labelled corpus; prints validation and test metrics and writes the model folder.");
        foreach (var option in (Option[])[.. data.All, .. training.All, .. output.All, .. methods.All, trackingUri, experiment, runName])
            command.Options.Add(option);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output.Out, output.Force, "finetune");
            TorchRuntime.EnsureLoaded();
            if (parse.GetValue(output.Threads) is { } n) TorchRuntime.SetThreads(n);
            var selfTraining = SelfTrainOption.Parse(parse, methods.SelfTrain);
            var fixMatching = FixMatchOption.Parse(parse, methods.FixMatch);
            var job = JobOptions(parse, data, training, output, methods, selfTraining, fixMatching);
            // Everything that can be wrong with the arguments is found here, before the output folder or an MLflow run exists.
            var plan = FinetuneJob.Check(job);
            claimed.Mark();
            var given = new Given(parse.GetValue(data.Task)!, parse.GetValue(data.Roi), parse.GetValue(output.Device)!, selfTraining, fixMatching,
                parse.GetValue(output.Json));
            using var tracked = StartTracking(plan, given, parse.GetValue(trackingUri), parse.GetValue(experiment), parse.GetValue(runName));
            // The run id goes into the checkpoints' trainer.json, so that a --resume continues this run.
            if (tracked?.RunId is { } runId) plan = plan with { Options = plan.Options with { FineTune = plan.Options.FineTune with { RunId = runId } } };
            return Execute(plan, given, tracked);
        });
        return command;
    }

    /// <summary>
    /// The MLflow run of this job (null with --tracking-uri none). A resumed job continues the run its checkpoint
    /// names: its params are logged already (MLflow keeps them immutable), and a tag says where it went on from.
    /// </summary>
    static MlflowRun? StartTracking(FinetunePlan plan, Given given, string? trackingUri, string? experiment, string? runName)
    {
        var tracked = Tracked.Start("finetune", plan.Options.FineTune.OutputDirectory!, trackingUri, experiment, runName,
            new Dictionary<string, string> { ["medformer.resume"] = plan.Options.FineTune.Resume ? "True" : "False" }, plan.ResumeRunId);
        if (tracked is { Resumed: true }) tracked.SetTag("medformer.resumed_from", Path.GetFullPath(plan.ResumeFrom!));
        else tracked?.LogParams(Params(plan, given));
        return tracked;
    }

    /// <summary>What is fine-tuned on what: the pretrained model, the labelled corpus, the head and its crops.</summary>
    sealed record DataOptions(Option<string> Checkpoint, Option<string> Task, Option<string?> Head, Option<string?> Roi)
    {
        public Option[] All => [Checkpoint, Task, Head, Roi];

        public static DataOptions Create() => new(
            new Option<string>("--checkpoint") { Description = "The pretrained model: a folder (config.json + model.safetensors) or a hub name.",
                Required = true },
            new Option<string>("--task") { Description =
                "The labelled corpus, as evaluate's --task and a run config's data: phantom:2d|3d (embedded), " +
                    "medmnist:NAME[,size=64] (a downloaded subset), npz:FILE[,subset=NAME] (MedMNIST layout; subset= names its labels where " +
                    "the file name does not), mnist:FOLDER, msd:FOLDER (a Decathlon task: 70/10/20% of its labelled cases for training, " +
                    "validation, test) or petct:FOLDER[,in=60,out=90] (PET studies, exposures in s to out s; split likewise). Shorthands: " +
                    "phantom, a subset name, an .npz path.", DefaultValueFactory = _ => "phantom:2d" },
            new Option<string?>("--head") { Description =
                "The head and its settings: classification[:pooling=flatten|mean|query|class_queries,label_smoothing=0.1,task=BANK], " +
                    "segmentation[:classes=K,pixel_context=3], restoration, super-resolution[:scale=2|4] or translation[:out_channels=C] " +
                    "(each with l1=, mse=, ssim=, data_range=). Default: segmentation for msd, restoration for petct, else classification." },
            new Option<string?>("--roi") { Description =
                "Dense heads: train on random crops of this size (e.g. 32,32,32 or 64) and score larger images by sliding windows of " +
                    "it (default 32³ for msd and petct)." });
    }

    /// <summary>How it trains: what trains, on how many labels, for how long, how fast, at what image size, with which regularisers.</summary>
    sealed record TrainingOptions(Option<string> Strategy, Option<double> Fraction, Option<long> Seed, Option<long> MaxSteps, Option<int> BatchSize,
        Option<double> Lr, Option<int?> Size, Option<double> Mixup, Option<double> Ema, Option<string?> BrainFuse, Option<bool> NoAugment)
    {
        public Option[] All => [Strategy, Fraction, Seed, MaxSteps, BatchSize, Lr, Size, Mixup, Ema, BrainFuse, NoAugment];

        public static TrainingOptions Create()
        {
            var defaults = new FineTuneOptions();  // the defaults live there, once
            return new(
                new Option<string>("--strategy") { Description =
                    "What trains: full, linear (the head only), last:K (the last K blocks), llrd:D (layer-wise learning-rate decay D).",
                        DefaultValueFactory = _ => "full" },
                new Option<double>("--fraction") { Description = "The fraction of the training labels to use, stratified by class, in (0, 1].",
                    DefaultValueFactory = _ => 1.0 },
                new Option<long>("--seed") { Description = "Seed of the label draw and of every random draw of the run.", DefaultValueFactory = _ => 0 },
                new Option<long>("--max-steps") { Description = "Optimizer steps.", DefaultValueFactory = _ => defaults.MaxSteps },
                new Option<int>("--batch-size") { Description = "Samples per step.", DefaultValueFactory = _ => defaults.BatchSize },
                new Option<double>("--lr") { Description = "Peak learning rate (AdamW, warmup then cosine).",
                    DefaultValueFactory = _ => defaults.LearningRate },
                new Option<int?>("--size") { Description = "MedMNIST image size (28, 64, 128, 224)." },
                new Option<double>("--mixup") { Description =
                    "Mixup's α (classification): batches mixed with a permutation of themselves by λ ~ Beta(α, α), labels alike; 0 (default) is off.",
                    DefaultValueFactory = _ => 0 },
                new Option<double>("--ema") { Description =
                    "Decay of an exponential moving average of the weights (e.g. 0.999) that validation scores and the model folder keeps; " +
                        "0 (default) is off.", DefaultValueFactory = _ => 0 },
                new Option<string?>("--brainfuse") { Description =
                    "BrainFuse (off by default): a share of each batch replaced by mixes of K training subjects with combined targets " +
                        "(classification and segmentation heads), optionally with a consistency term: parts=K (2),alpha=A (Dirichlet " +
                        "concentration, 1),weights=dirichlet|smooth (one weight per part, or smooth spatial maps; smooth),share=S (0.5)," +
                        "consistency=λ (0: off),grid=G (control points per axis of the smooth maps, 4)." },
                new Option<bool>("--no-augment") { Description = "Train without crops and flips." });
        }
    }

    /// <summary>Where it writes and runs: the output folder, checkpoints and resuming, the device, precision and threads, the report's form.</summary>
    sealed record OutputOptions(Option<string> Out, Option<bool> Force, Option<string> Device, Option<string> Precision, Option<int?> Threads,
        Option<bool> Json, Option<bool> Resume, Option<long> CheckpointEvery)
    {
        public Option[] All => [Out, Force, Device, Precision, Threads, Json, Resume, CheckpointEvery];

        public static OutputOptions Create() => new(
            new Option<string>("--out") { Description = "Output folder: checkpoints and the fine-tuned model (model/). " + OutputOption.Rule,
                DefaultValueFactory = _ => Path.Combine("runs",
                "finetune") },
            OutputOption.Force(),
            new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => DeviceSpec.DefaultSpec },
            new Option<string>("--precision") { Description = "fp32, bf16 or fp16 (bf16 pays from small up on a CPU with AVX512-BF16).",
                DefaultValueFactory = _ => new TrainerOptions().Precision.Name() },
            new Option<int?>("--threads") { Description = "CPU threads for libtorch (default: all cores)." },
            new Option<bool>("--json") { Description = "Print one JSON object (progress goes to stderr)." },
            new Option<bool>("--resume") { Description =
                "Continue from the newest checkpoint in --out (Ctrl-C writes one; see --checkpoint-every), with the same arguments: it " +
                    "ends as the uninterrupted run would." },
            new Option<long>("--checkpoint-every") { Description =
                "Steps between checkpoints in --out (0: only at the end and where interrupted).", DefaultValueFactory = _ => 0 });
    }

    /// <summary>The methods beyond plain fine-tuning: batch adaptation, self-training and FixMatch.</summary>
    sealed record MethodOptions(Option<string?> Dba, Option<string?> SelfTrain, Option<string?> FixMatch)
    {
        public Option[] All => [Dba, SelfTrain, FixMatch];

        public static MethodOptions Create() => new(DbaOption.Create(), SelfTrainOption.Create(), FixMatchOption.Create());
    }

    /// <summary>The job the command line describes, its settings parsed (a bad one is an <see cref="ArgumentException"/>).</summary>
    static FinetuneJobOptions JobOptions(ParseResult parse, DataOptions data, TrainingOptions training, OutputOptions output, MethodOptions methods,
        SelfTrainOption.Request? selfTraining, FixMatchOption.Request? fixMatching) => new()
    {
        Checkpoint = parse.GetValue(data.Checkpoint)!, Task = DataSource.Parse(parse.GetValue(data.Task)!, parse.GetValue(training.Size)),
        Head = parse.GetValue(data.Head), Roi = ParseRoi(parse.GetValue(data.Roi)), Strategy = Strategy.Parse(parse.GetValue(training.Strategy)!),
        Fraction = parse.GetValue(training.Fraction), Augment = !parse.GetValue(training.NoAugment), SelfTraining = selfTraining?.Options,
        FreshStudent = selfTraining?.FreshStudent ?? false, FixMatch = fixMatching?.Options, FixMatchSteps = fixMatching?.Steps,
        FineTune = new FineTuneOptions
        {
            MaxSteps = parse.GetValue(training.MaxSteps), BatchSize = parse.GetValue(training.BatchSize), LearningRate = parse.GetValue(training.Lr),
            Seed = parse.GetValue(training.Seed), Precision = PrecisionNames.Parse(parse.GetValue(output.Precision)!),
            Device = DeviceSpec.Resolve(parse.GetValue(output.Device)), OutputDirectory = parse.GetValue(output.Out)!, Workers = 2,
            Mixup = parse.GetValue(training.Mixup), Ema = parse.GetValue(training.Ema),
            BatchAdaptation = DbaOption.Parse(parse.GetValue(methods.Dba), parse.GetValue(training.BatchSize)),
            BrainFuse = parse.GetValue(training.BrainFuse) is { } fuse ? BrainFuseOptions.Parse(fuse) : null,
            Resume = parse.GetValue(output.Resume), CheckpointEvery = parse.GetValue(output.CheckpointEvery) is >= 0 and var every ? every
                : throw new ArgumentException($"--checkpoint-every {parse.GetValue(output.CheckpointEvery)}: must not be negative"),
        },
    };

    /// <summary>What the command line said, as the MLflow params and the report spell it.</summary>
    sealed record Given(string Task, string? Roi, string Device, SelfTrainOption.Request? SelfTraining, FixMatchOption.Request? FixMatch, bool Json);

    /// <summary>The run's MLflow params: the arguments as given, the head and precision as they run.</summary>
    static Dictionary<string, object?> Params(FinetunePlan plan, Given given)
    {
        var (job, options) = (plan.Options, plan.Options.FineTune);
        return new()
        {
            ["checkpoint"] = job.Checkpoint, ["task"] = given.Task, ["head"] = plan.Head, ["roi"] = given.Roi,
            ["strategy"] = job.Strategy.ToString(), ["fraction"] = job.Fraction, ["seed"] = options.Seed, ["max_steps"] = options.MaxSteps,
                ["batch_size"] = options.BatchSize,
            ["lr"] = options.LearningRate, ["precision"] = plan.Precision.Name(), ["precision_requested"] = options.Precision.Name(), ["device"] = given.Device,
            ["augment"] = job.Augment, ["mixup"] = options.Mixup, ["ema"] = options.Ema, ["brainfuse"] = options.BrainFuse?.ToString() ?? "none",
            ["dba"] = DbaOption.Describe(options.BatchAdaptation), ["self_train"] = SelfTrainOption.Describe(given.SelfTraining, options.MaxSteps),
            ["fixmatch"] = FixMatchOption.Describe(given.FixMatch, options.MaxSteps),
        };
    }

    static int Execute(FinetunePlan plan, Given given, MlflowRun? tracked)
    {
        bool asJson = given.Json;
        using var interrupt = new Interruption();  // Ctrl-C or SIGTERM: stop at the next step boundary
        var progress = new ProgressLine(Console.IsOutputRedirected || asJson, "medformer finetune", asJson ? Console.Error : Console.Out);
        // Self-training rounds and FixMatch count their steps from 1 again; MLflow's step axis goes on after fine-tuning's.
        long stepOffset = 0, lastStep = 0;
        void Log(TrainerLog log)
        {
            if (log.Step + stepOffset <= lastStep) stepOffset = lastStep;
            lastStep = log.Step + stepOffset;
            progress.Show(log);
            tracked?.LogMetrics(Tracked.Metrics(log), lastStep);
        }
        void SemiSupervised(SemiSupervisedStart start)
        {
            progress.Done();
            bool self = start.Method == "self-training";
            if (!asJson)
                Console.WriteLine(self ? $"teacher: test {Describe(start.Test)}; self-training on {start.Unlabelled} images without labels"
                    : $"fine-tuned: test {Describe(start.Test)}; FixMatch with {start.Unlabelled} images without labels");
            string prefix = self ? "teacher_test_" : "fine_tuned_test_";
            tracked?.LogMetrics(start.Test.Where(p => double.IsFinite(p.Value)).Select(p => KeyValuePair.Create(prefix + p.Key, p.Value)), lastStep);
        }
        try
        {
            var result = FinetuneJob.Run(plan, new FinetuneProgress
            {
                Started = start => { if (!asJson) Console.WriteLine(Describe(plan.Options.Checkpoint, start)); },
                Log = Log, Notice = progress.Notice, SemiSupervised = SemiSupervised,
            }, interrupt.Token);
            progress.Done();
            Report(plan, result, given, tracked, lastStep);
            return ExitCodes.Done;
        }
        catch (OperationCanceledException)
        {
            progress.Done();
            Console.Error.WriteLine("medformer finetune: interrupted; the same command with --resume continues from its checkpoint");
            Tracked.End(tracked, RunStatus.Killed, "finetune", Console.Error);
            return interrupt.ExitCode;
        }
        catch (Exception e) when (ExitCodes.IsFailure(e))
        {
            progress.Done();
            return Tracked.Fail(tracked, "finetune", e, Console.Error);
        }
    }

    /// <summary>The final scores and model: logged to MLflow, and printed (one JSON object with --json), and the run ended.</summary>
    static void Report(FinetunePlan plan, FinetuneJobResult result, Given given, MlflowRun? tracked, long lastStep)
    {
        var (tuned, t) = (result.FineTuning, result.FineTuning.Training);
        string model = Path.GetFullPath(tuned.ModelDirectory!);
        if (tracked is not null)
        {
            var scores = result.Test.Select(p => KeyValuePair.Create("test_" + p.Key, p.Value))
                .Concat((tuned.Validation ?? new Dictionary<string, double>()).Select(p => KeyValuePair.Create("val_" + p.Key, p.Value)))
                .Where(p => double.IsFinite(p.Value));
            tracked.LogMetrics(scores, Math.Max(lastStep, t.Steps));
            tracked.SetTag("medformer.model", model);
            tracked.LogArtifacts(tuned.ModelDirectory!, "model");
        }
        if (given.Json)
            Console.WriteLine(Json(plan, result, given).ToJsonString());
        else
        {
            Console.WriteLine($"fine-tuned {t.Steps} steps in {t.Elapsed:hh\\:mm\\:ss}; final loss {t.FinalLoss.ToString("F4", CultureInfo.InvariantCulture)}");
            if (tuned.Validation is { } v) Console.WriteLine($"validation: {Describe(v)}");
            Console.WriteLine($"test: {Describe(result.Test)}");
            Console.WriteLine($"model: {model}");
        }
        Tracked.End(tracked, RunStatus.Finished, "finetune", given.Json ? Console.Error : Console.Out);
    }

    /// <summary>The --json report: the run's arguments, steps, loss, validation and test scores, the model folder, and what self-training, FixMatch and DBA
    /// did.</summary>
    static JsonObject Json(FinetunePlan plan, FinetuneJobResult result, Given given)
    {
        var (job, options, tuned, t) = (plan.Options, plan.Options.FineTune, result.FineTuning, result.FineTuning.Training);
        var report = new JsonObject
        {
            ["checkpoint"] = job.Checkpoint, ["task"] = given.Task, ["head"] = plan.Head, ["strategy"] = job.Strategy.ToString(), ["fraction"] = job.Fraction,
            ["seed"] = options.Seed, ["train_samples"] = result.TrainSamples, ["steps"] = t.Steps, ["final_loss"] = Finite(t.FinalLoss),
            ["elapsed_seconds"] = Math.Round(t.Elapsed.TotalSeconds, 1),
            ["validation"] = tuned.Validation is null ? null : Scores(tuned.Validation), ["test"] = Scores(result.Test),
            ["model"] = Path.GetFullPath(tuned.ModelDirectory!),
        };
        if (result.Rounds is { } rounds)
            report["self_training"] = new JsonObject
            {
                ["settings"] = SelfTrainOption.Describe(given.SelfTraining, options.MaxSteps),
                ["pseudo_labelled"] = new JsonArray([.. rounds.Select(r => (JsonNode)r.PseudoLabelled)]),
                ["unlabelled"] = result.Unlabelled,
            };
        if (given.FixMatch is not null)
            report["fixmatch"] = new JsonObject { ["settings"] = FixMatchOption.Describe(given.FixMatch, options.MaxSteps),
                ["unlabelled"] = result.Unlabelled };
        if (options.BrainFuse is { } fuse)
            report["brainfuse"] = new JsonObject
            {
                ["settings"] = fuse.ToString(),
                ["loss_brainfuse"] = t.History.LastOrDefault(l => l.Parts.ContainsKey("brainfuse")) is { } mixed ? Finite(mixed.Parts["brainfuse"]) : null,
                ["loss_consistency"] = t.History.LastOrDefault(l => l.Parts.ContainsKey("consistency")) is { } consistent
                    ? Finite(consistent.Parts["consistency"]) : null,
            };
        if (options.BatchAdaptation is not null && t.History.LastOrDefault(l => l.BatchSize is not null) is { } adapted)
            report["batch_adaptation"] = new JsonObject { ["settings"] = DbaOption.Describe(options.BatchAdaptation), ["batch_size"] = adapted.BatchSize,
                ["selected_size"] = adapted.SelectedSize };
        return report;
    }

    /// <summary>"fine-tuning CHECKPOINT on CORPUS: N samples, head KIND (SETTINGS), strategy S, STEPS steps of BATCH".</summary>
    static string Describe(string checkpoint, FinetuneStart start) =>
        $"fine-tuning {checkpoint} on {start.TrainName}: {start.TrainSamples} samples, head {start.HeadKind} " +
            $"({string.Join(", ", start.HeadSettings.Select(p => $"{p.Key}={p.Value}"))}), strategy " +
            $"{start.Strategy}, {start.MaxSteps} steps of {start.BatchSize}";

    /// <summary>--roi "32,32,32" (or one size for every axis, "32", expanded by the job to the corpus's dimensionality).</summary>
    static long[]? ParseRoi(string? text)
    {
        if (text is null) return null;
        var sizes = text.Split(',').Select(p => long.TryParse(p.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out long n) && n > 0 ? n
            : throw new ArgumentException($"--roi '{text}': expected positive sizes such as 32,32,32 (or 32 for every axis)")).ToArray();
        return sizes.Length is 1 or 2 or 3 ? sizes : throw new ArgumentException($"--roi '{text}': one size, or one per spatial axis (2 or 3)");
    }

    static JsonObject Scores(IReadOnlyDictionary<string, double> scores) => new([.. scores.Select(p =>
        KeyValuePair.Create(p.Key, (JsonNode?)Finite(p.Value)))]);

    static JsonNode? Finite(double value) => double.IsFinite(value) ? JsonValue.Create(Math.Round(value, 6)) : null;

    static string Describe(IReadOnlyDictionary<string, double> scores) =>
        string.Join(", ", scores.Select(p =>
            $"{p.Key} {(p.Key == "samples" ? p.Value.ToString("F0", CultureInfo.InvariantCulture) : p.Value.ToString("F4", CultureInfo.InvariantCulture))}"));
}
