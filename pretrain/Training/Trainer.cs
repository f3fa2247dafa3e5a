using System.Diagnostics;
using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Training;

/// <summary>
/// One line of the training log. With batch adaptation, <see cref="BatchSize"/> is the mean batch size of the steps
/// since the last line and <see cref="SelectedSize"/> the mean of their median selected sizes; null otherwise.
/// </summary>
public sealed record TrainerLog(long Step, long MaxSteps, double Loss, IReadOnlyDictionary<string, double> Parts, double LearningRate,
    double GradNorm, double SamplesPerSecond, TimeSpan Elapsed, TimeSpan Remaining, long SkippedSteps,
    double? BatchSize = null, double? SelectedSize = null);

/// <summary>What a finished run leaves: where its model and last checkpoint are, and how it went.</summary>
public sealed record TrainerResult(string ModelDirectory, string LastCheckpoint, long Steps, double FinalLoss, long SkippedSteps,
    TimeSpan Elapsed, IReadOnlyList<TrainerLog> History, IReadOnlyList<(long Step, IReadOnlyDictionary<string, double> Metrics)> Evaluations);

/// <summary>A run stopped because its loss or gradients stayed non-finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);

/// <summary>
/// The training loop, shared by pretraining and fine-tuning (Lightning's Trainer, in small): AdamW on fp32 master
/// weights with no weight decay on norms, biases, latents and queries; warmup then cosine; gradient accumulation
/// and clipping; the precision policy; a guard that skips a step whose loss or gradient is not finite and stops
/// after too many in a row; logs, evaluation hooks and atomic checkpoints.
/// <para>
/// Every random draw of step s comes from a generator seeded by (seed, s) and the loader's order is a function of
/// the batch index, so a run resumed from a checkpoint (<c>resume: true</c>) replays exactly what the uninterrupted
/// run would have done: on a CPU in deterministic mode, bit for bit.
/// </para>
/// <para>
/// With batch adaptation (<see cref="TrainerOptions.BatchAdaptation"/>) the loader still gives batches of its fixed
/// size (max_batch) at the same indices, and a step takes the first current-batch-size samples of its batch: the
/// loader's position stays step × accumulation, and the batch size and the rule's window go into trainer.json, so
/// a resumed run replays the same sizes and selections. (The unused tail of a batch is skipped; every epoch
/// reshuffles, so each sample still has the same chance of being used.)
/// </para>
/// </summary>
public sealed class Trainer(TrainerOptions options, Device device, Action<string>? notice = null)
{
    public TrainerOptions Options { get; } = options;

    /// <param name="batches">The loader's batches from a batch index (0, or where a resumed run left off).</param>
    /// <param name="outputDirectory">Checkpoints go to <c>checkpoint-NNNNNN/</c> in it, the final model to <c>model/</c>.</param>
    /// <param name="resume">Continue from the newest whole checkpoint in <paramref name="outputDirectory"/>.</param>
    public TrainerResult Fit(TrainingTask task, Func<long, IEnumerable<Batch>> batches, string outputDirectory, bool resume = false,
        Action<TrainerLog>? log = null, Func<long, IReadOnlyDictionary<string, double>>? evaluate = null, CancellationToken cancel = default)
    {
        Options.Validate();
        Directory.CreateDirectory(outputDirectory);
        task.Module.to(device);
        using var policy = MixedPrecision.Create(task.Module, Options.Precision, device, notice);
        task.Prepare(policy.ComputeType, device);
        BatchAdaptation? adaptation = null;
        if (Options.BatchAdaptation is { Enabled: true } adaptationOptions)
        {
            if (policy.Scaler is not null) throw new ArgumentException("batch_adaptation: fp16's loss scaling is not supported with per-sample gradients; use bf16 or fp32");
            adaptation = new BatchAdaptation(adaptationOptions);
        }
        using var adaptive = adaptation is null ? null : new AdaptiveStep(adaptation, task);
        var named = policy.NamedMasterParameters.ToList();
        // Parameter groups by (weight decay, learning-rate scale): pretraining has two, decay then no decay; fine-tuning
        // adds scales (layer-wise decay). Frozen parameters stay out of the optimizer.
        var groups = named.Where(p => p.Master.requires_grad)
            .GroupBy(p => (Decays: Decays(p.Name, p.Master), Scale: task.LearningRateScale(p.Name)))
            .OrderBy(g => g.Key.Decays ? 0 : 1).ThenByDescending(g => g.Key.Scale).ToList();
        if (groups.Count == 0) throw new ArgumentException($"{task.GetType().Name}: no parameter trains (every one is frozen)");
        var scales = groups.Select(g => g.Key.Scale).ToArray();
        var ordered = groups.SelectMany(g => g).ToList();  // the optimizer's own order, for its state in checkpoints
        using var optimizer = optim.AdamW(
            [.. groups.Select(g => new AdamW.ParamGroup(g.Select(p => p.Master), lr: Options.LearningRate * g.Key.Scale, beta1: Options.Beta1,
                beta2: Options.Beta2, weight_decay: g.Key.Decays ? Options.WeightDecay : 0))], lr: Options.LearningRate);

        var state = new TrainerState
        {
            Seed = Options.Seed, Precision = Options.Precision.ToString().ToLowerInvariant(), MaxSteps = Options.MaxSteps, Accumulation = Options.Accumulation,
        };
        if (resume)
        {
            string from = TrainingCheckpoint.Latest(outputDirectory)
                ?? throw new ArgumentException($"--resume: no checkpoint in {outputDirectory} to resume from");
            state = TrainingCheckpoint.Load(from, task, policy, optimizer, ordered);
            if (state.Seed != Options.Seed) throw new ArgumentException($"--resume: {from} was trained with seed {state.Seed}, not {Options.Seed}");
            if (state.Accumulation != Options.Accumulation)
                throw new ArgumentException($"--resume: {from} was trained with accumulation {state.Accumulation}, not {Options.Accumulation}; the loader's position depends on it");
            if (state.MaxSteps != Options.MaxSteps)
                notice?.Invoke($"max_steps is {Options.MaxSteps} where {from} was trained towards {state.MaxSteps}: the learning-rate schedule from here differs from the original run's");
            state.MaxSteps = Options.MaxSteps;
            if (adaptation is not null && state.BatchAdaptation is { } adapted) adaptation.Restore(adapted);
            else if (adaptation is not null) notice?.Invoke($"{from} was trained without batch adaptation: it starts here at batch size {adaptation.CurrentBatch}");
            else if (state.BatchAdaptation is not null) notice?.Invoke($"{from} was trained with batch adaptation; this run takes the loader's whole batches");
            notice?.Invoke($"resuming from {from} at step {state.Step}");
        }

        var history = new List<TrainerLog>();
        var evaluations = new List<(long, IReadOnlyDictionary<string, double>)>();
        var clock = Stopwatch.StartNew();
        var window = Stopwatch.StartNew();
        long windowSamples = 0, windowStart = state.Step;
        var masters = named.Select(p => p.Master).ToArray();
        double lossSum = 0, normSum = 0;
        var partSums = new Dictionary<string, double>();
        int lossCount = 0;
        double batchSum = 0, selectedSum = 0;
        int adaptedSteps = 0;
        string? lastCheckpoint = null;

        using var stream = batches(resume ? state.LoaderPosition : 0).GetEnumerator();
        task.Module.train();
        while (state.Step < Options.MaxSteps)
        {
            cancel.ThrowIfCancellationRequested();
            long step = state.Step;
            double lr = Options.LearningRateAt(step);
            foreach (var (group, scale) in optimizer.ParamGroups.Zip(scales)) group.LearningRate = lr * scale;
            double stepLoss = 0;
            var stepParts = new Dictionary<string, double>();
            using (var scope = NewDisposeScope())
            {
                IReadOnlyList<int>? selected = null;
                for (int micro = 0; micro < Options.Accumulation; micro++)
                {
                    if (!stream.MoveNext()) throw new InvalidOperationException("the loader ran out of batches");
                    using var loaded = stream.Current;
                    using var head = adaptation is not null && adaptation.CurrentBatch < loaded.Count ? Take(loaded, adaptation.CurrentBatch) : null;
                    var batch = head ?? loaded;
                    long seed = Seeding.Derive(Options.Seed, "step", step * Options.Accumulation + micro);
                    torch.manual_seed(seed);  // dropout, stochastic depth: the global generator, reseeded per micro-step
                    using var generator = new Generator((ulong)seed, device);
                    var context = new StepContext(step, generator, policy.Cast, task.Target);
                    if (adaptive is not null)
                    {
                        using var candidates = new Generator((ulong)Seeding.Derive(Options.Seed, "batch-adaptation", step), CPU);
                        var result = adaptive.Backward(batch, context, candidates, policy);
                        stepLoss = result.Loss;
                        foreach (var (name, part) in result.Parts) stepParts[name] = part;
                        selected = result.Selected;
                        batchSum += result.Count;
                        selectedSum += BatchAdaptation.Median(result.Selected);
                        adaptedSteps++;
                    }
                    else
                    {
                        var (loss, parts) = task.Loss(batch, context);
                        policy.Backward(Options.Accumulation == 1 ? loss : loss / Options.Accumulation);
                        stepLoss += loss.item<float>() / Options.Accumulation;
                        foreach (var (name, part) in parts) stepParts[name] = stepParts.GetValueOrDefault(name) + part.item<float>() / Options.Accumulation;
                    }
                    windowSamples += batch.Count;
                }
                bool finite = policy.UnscaleGradients() && double.IsFinite(stepLoss);
                double norm = finite ? GradientNorm(masters, Options.GradClip) : double.NaN;
                finite &= double.IsFinite(norm);
                if (finite && policy.Step(optimizer))
                {
                    state.NonFiniteInARow = 0;
                    task.AfterStep(step, Options.MaxSteps);
                    lossSum += stepLoss;
                    normSum += norm;
                    foreach (var (name, value) in stepParts) partSums[name] = partSums.GetValueOrDefault(name) + value;
                    lossCount++;
                }
                else
                {
                    state.SkippedSteps++;
                    state.NonFiniteInARow++;
                    if (state.NonFiniteInARow >= Options.MaxNonFiniteInARow)
                        throw new TrainingDivergedException($"step {step}: the loss or the gradients were not finite {state.NonFiniteInARow} steps in a row (last loss {stepLoss}); lower the learning rate, or use bf16 rather than fp16");
                }
                policy.ZeroGrad(optimizer);
                if (selected is not null) adaptation!.Update(selected);  // the next step's batch size
            }
            state.Step = step + 1;
            state.LearningRate = lr;
            state.LossScale = policy.Scaler?.Scale;
            state.LossScaleGrowthTracker = policy.Scaler?.GrowthTracker;

            bool last = state.Step == Options.MaxSteps;
            if (state.Step % Options.LogEvery == 0 || last)
            {
                double seconds = window.Elapsed.TotalSeconds;
                double rate = seconds > 0 ? windowSamples / seconds : 0;
                double stepsPerSecond = seconds > 0 ? (state.Step - windowStart) / seconds : 0;
                var entry = new TrainerLog(state.Step, Options.MaxSteps, lossCount > 0 ? lossSum / lossCount : double.NaN,
                    partSums.ToDictionary(p => p.Key, p => p.Value / Math.Max(1, lossCount)), lr,
                    lossCount > 0 ? normSum / lossCount : double.NaN, rate, clock.Elapsed + TimeSpan.FromSeconds(state.ElapsedSeconds),
                    stepsPerSecond > 0 ? TimeSpan.FromSeconds((Options.MaxSteps - state.Step) / stepsPerSecond) : TimeSpan.Zero, state.SkippedSteps,
                    adaptedSteps > 0 ? batchSum / adaptedSteps : null, adaptedSteps > 0 ? selectedSum / adaptedSteps : null);
                (batchSum, selectedSum, adaptedSteps) = (0, 0, 0);
                history.Add(entry);
                state.LastLoss = entry.Loss;
                log?.Invoke(entry);
                (lossSum, normSum, lossCount, windowSamples, windowStart) = (0, 0, 0, 0, state.Step);
                partSums.Clear();
                window.Restart();
            }
            if (evaluate is not null && Options.EvaluateEvery > 0 && (state.Step % Options.EvaluateEvery == 0 || last))
            {
                task.Module.eval();
                evaluations.Add((state.Step, evaluate(state.Step)));
                task.Module.train();
            }
            if ((Options.CheckpointEvery > 0 && state.Step % Options.CheckpointEvery == 0) || last)
            {
                state.BatchAdaptation = adaptation?.Snapshot();
                double elapsedBefore = state.ElapsedSeconds;
                state.ElapsedSeconds += clock.Elapsed.TotalSeconds;
                lastCheckpoint = TrainingCheckpoint.Save(outputDirectory, task, policy, optimizer, ordered, state, Options.KeepCheckpoints);
                state.ElapsedSeconds = elapsedBefore;
            }
        }
        lastCheckpoint ??= TrainingCheckpoint.Latest(outputDirectory)!;
        string modelDirectory = Path.Combine(outputDirectory, "model");
        TrainingCheckpoint.SaveModel(modelDirectory, task, policy);
        return new TrainerResult(modelDirectory, lastCheckpoint, state.Step, state.LastLoss, state.SkippedSteps,
            clock.Elapsed + TimeSpan.FromSeconds(state.ElapsedSeconds), history, evaluations);
    }

    /// <summary>The first <paramref name="count"/> samples of a batch (views of its tensors).</summary>
    internal static Batch Take(Batch batch, int count) =>
        new(batch.Index, [.. batch.Views.Select(v => new BatchView(v.Images.narrow(0, 0, count), v.Targets?.narrow(0, 0, count), v.Coordinates?.narrow(0, 0, count)))],
            [.. batch.Metas.Take(count)]);

    /// <summary>Matrices decay; norms, biases, latent banks and learned queries do not (as in MAE, DeiT and Perceiver).</summary>
    static bool Decays(string name, Parameter parameter) =>
        parameter.dim() >= 2 && !name.Contains("latents.", StringComparison.Ordinal) && !name.EndsWith("query", StringComparison.Ordinal)
        && !name.Contains("norm", StringComparison.Ordinal) && !name.Contains(".ln", StringComparison.Ordinal);

    /// <summary>The global L2 norm of the gradients, clipped to <paramref name="clip"/> when it is positive.</summary>
    static double GradientNorm(Parameter[] parameters, double clip)
    {
        var withGrad = parameters.Where(p => p.grad is not null).ToArray();
        if (withGrad.Length == 0) return 0;
        if (clip > 0) return nn.utils.clip_grad_norm_(withGrad, clip);
        using var scope = NewDisposeScope();
        return stack(withGrad.Select(p => p.grad!.to(ScalarType.Float32).norm())).norm().item<float>();
    }
}
