using System.Diagnostics;
using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Training;

/// <summary>
/// One line of the training log. With batch adaptation, <see cref="BatchSize"/> is the mean batch size of the steps
/// since the last line and <see cref="SelectedSize"/> the mean of their median selected sizes; null otherwise.
/// Data parallel: the loss and its parts are the means over ranks, <see cref="SamplesPerSecond"/> counts every
/// rank's samples, and <see cref="Communication"/> is the fraction of the time since the last line spent in
/// collectives (null in one process).
/// </summary>
public sealed record TrainerLog(long Step, long MaxSteps, double Loss, IReadOnlyDictionary<string, double> Parts, double LearningRate,
    double GradNorm, double SamplesPerSecond, TimeSpan Elapsed, TimeSpan Remaining, long SkippedSteps,
    double? BatchSize = null, double? SelectedSize = null, double? Communication = null);

/// <summary>What a finished run leaves: where its model and last checkpoint are, and how it went.</summary>
/// <param name="Precision">The precision that ran (<see cref="RequestedPrecision"/> may differ: bf16 falls back to fp32 on a CPU without fast bf16).</param>
public sealed record TrainerResult(string ModelDirectory, string LastCheckpoint, long Steps, double FinalLoss, long SkippedSteps,
    TimeSpan Elapsed, IReadOnlyList<TrainerLog> History, IReadOnlyList<(long Step, IReadOnlyDictionary<string, double> Metrics)> Evaluations,
    Precision Precision, Precision RequestedPrecision);

/// <summary>
/// A run stopped by its cancellation token (Ctrl-C, SIGTERM) at a step boundary, after writing the checkpoint of that
/// step, so <c>--resume</c> continues from exactly there.
/// </summary>
public sealed class TrainingInterruptedException(long step, string checkpoint, CancellationToken token)
    : OperationCanceledException($"interrupted after step {step}; checkpoint {checkpoint}", token)
{
    public long Step { get; } = step;
    public string Checkpoint { get; } = checkpoint;
}

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
/// <para>
/// Data parallel (a <see cref="ProcessGroup"/> of more than one rank; DDP's recipe): each rank trains on its own
/// batches (the loader's shard); parameters and buffers are broadcast from rank 0 before the precision policy and
/// the momentum target copy them, so every rank starts, and stays, identical; after the backward pass gradients
/// are averaged over ranks in flat buckets; the objectives' gathers, Barlow Twins' statistics and the projectors'
/// BatchNorm span every rank (the global batch); the step's loss, finiteness and interruption are agreed over
/// ranks, so every rank skips the same steps and stops after the same one. Rank 0 alone writes checkpoints and the model; every rank reads them to resume.
/// </para>
/// </summary>
public sealed class Trainer(TrainerOptions options, Device device, Action<string>? notice = null, ProcessGroup? group = null)
{
    public TrainerOptions Options { get; } = options;

    /// <param name="batches">The loader's batches from a batch index (0, or where a resumed run left off).</param>
    /// <param name="outputDirectory">Checkpoints go to <c>checkpoint-NNNNNN/</c> in it, the final model to <c>model/</c>.</param>
    /// <param name="resume">Continue from the newest whole checkpoint in <paramref name="outputDirectory"/>.</param>
    public TrainerResult Fit(TrainingTask task, Func<long, IEnumerable<Batch>> batches, string outputDirectory, bool resume = false,
        Action<TrainerLog>? log = null, Func<long, IReadOnlyDictionary<string, double>>? evaluate = null, CancellationToken cancel = default)
    {
        Options.Validate();
        var distributed = group is { WorldSize: > 1 } ? group : null;
        if (distributed is not null && Options.BatchAdaptation is { Enabled: true })
            throw new ArgumentException($"batch_adaptation selects samples by their per-sample gradients on one process; it is not supported with data parallel ({distributed.WorldSize} processes): run it in one process");
        Directory.CreateDirectory(outputDirectory);
        task.Module.to(device);
        if (distributed is not null) Synchronize(task.Module, distributed);
        using var policy = MixedPrecision.Create(task.Module, Options.Precision, device, notice);
        task.Prepare(policy.ComputeType, device);
        if (distributed is not null)
            foreach (var module in task.Module.modules().Concat(task.Target?.Modules.SelectMany(m => m.modules()) ?? []))
                if (module is Projector projector) projector.AllReduceSum = distributed.AllReduceSumWithGradient;
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

        int world = distributed?.WorldSize ?? 1, rank = distributed?.Rank ?? 0;
        var state = new TrainerState
        {
            Seed = Options.Seed, Precision = policy.Effective.Name(), RequestedPrecision = Options.Precision.Name(), MaxSteps = Options.MaxSteps,
            Accumulation = Options.Accumulation, WorldSize = world, RunId = Options.RunId,
        };
        long checkpointed = -1;  // the step whose checkpoint is on disk (written or resumed from)
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
            if (state.WorldSize != world)
                notice?.Invoke($"{from} was trained on {state.WorldSize} process(es), this run has {world}: each rank resumes at batch {state.LoaderPosition} of its shard, which continues the interrupted pass exactly when the global batch (batch size × processes) is unchanged");
            state.WorldSize = world;
            (state.Precision, state.RequestedPrecision) = (policy.Effective.Name(), Options.Precision.Name());
            state.RunId = Options.RunId ?? state.RunId;
            checkpointed = state.Step;
            if (adaptation is not null && state.BatchAdaptation is { } adapted) adaptation.Restore(adapted);
            else if (adaptation is not null) notice?.Invoke($"{from} was trained without batch adaptation: it starts here at batch size {adaptation.CurrentBatch}");
            else if (state.BatchAdaptation is not null) notice?.Invoke($"{from} was trained with batch adaptation; this run takes the loader's whole batches");
            notice?.Invoke($"resuming from {from} at step {state.Step}");
        }

        var history = new List<TrainerLog>();
        var evaluations = new List<(long, IReadOnlyDictionary<string, double>)>();
        var clock = Stopwatch.StartNew();
        var window = Stopwatch.StartNew();
        var eta = new EtaEstimate();
        long windowSamples = 0, windowStart = state.Step;
        var masters = named.Select(p => p.Master).ToArray();
        var reducer = distributed is null ? null : new GradientReducer(distributed, masters);
        var communicationStart = distributed?.CommunicationTime ?? TimeSpan.Zero;
        double lossSum = 0, normSum = 0;
        var partSums = new Dictionary<string, double>();
        int lossCount = 0;
        double batchSum = 0, selectedSum = 0;
        int adaptedSteps = 0;
        string? lastCheckpoint = null;

        using var stream = batches(resume ? state.LoaderPosition : 0).GetEnumerator();
        task.Module.train();
        string Save()
        {
            state.BatchAdaptation = adaptation?.Snapshot();
            double elapsedBefore = state.ElapsedSeconds;
            state.ElapsedSeconds += clock.Elapsed.TotalSeconds;
            string folder = rank == 0
                ? TrainingCheckpoint.Save(outputDirectory, task, policy, optimizer, ordered, state, Options.KeepCheckpoints)
                : TrainingCheckpoint.PathOf(outputDirectory, state.Step);
            state.ElapsedSeconds = elapsedBefore;
            checkpointed = state.Step;
            return folder;
        }
        // Ctrl-C or SIGTERM: the step in progress finishes, its checkpoint is written (unless it just was), and the run stops.
        TrainingInterruptedException Interrupted() =>
            new(state.Step, checkpointed == state.Step ? TrainingCheckpoint.PathOf(outputDirectory, state.Step) : Save(), cancel);

        while (state.Step < Options.MaxSteps)
        {
            if (distributed is null && cancel.IsCancellationRequested) throw Interrupted();  // data parallel: the ranks agree on stopping, below
            long step = state.Step;
            double lr = Options.LearningRateAt(step);
            foreach (var (group, scale) in optimizer.ParamGroups.Zip(scales)) group.LearningRate = lr * scale;
            double stepLoss = 0;
            bool stop = false;
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
                    // Ranks draw independently (rank 0 as a single process does, so one-process runs keep their streams).
                    long seed = Seeding.Derive(Options.Seed, rank == 0 ? "step" : $"step/rank{rank}", step * Options.Accumulation + micro);
                    torch.manual_seed(seed);  // dropout, stochastic depth: the global generator, reseeded per micro-step
                    using var generator = new Generator((ulong)seed, device);
                    var context = distributed is null ? new StepContext(step, generator, policy.Cast, task.Target)
                        : new StepContext(step, generator, policy.Cast, task.Target, distributed.AllGatherWithGradient, distributed.AllReduceSumWithGradient, rank);
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
                    windowSamples += batch.Count * world;
                }
                bool finite = policy.UnscaleGradients() && double.IsFinite(stepLoss);
                if (distributed is not null)
                {
                    distributed.ThrowIfFailed();  // a collective inside the backward pass failed
                    reducer!.AverageGradients();
                    (finite, stop) = Agree(distributed, finite, cancel.IsCancellationRequested, ref stepLoss, stepParts);
                }
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
                    eta.Remaining(state.Step, Options.MaxSteps, clock.Elapsed, stepsPerSecond > 0 ? 1 / stepsPerSecond : double.NaN), state.SkippedSteps,
                    adaptedSteps > 0 ? batchSum / adaptedSteps : null, adaptedSteps > 0 ? selectedSum / adaptedSteps : null,
                    distributed is null || seconds <= 0 ? null : (distributed.CommunicationTime - communicationStart).TotalSeconds / seconds);
                communicationStart = distributed?.CommunicationTime ?? TimeSpan.Zero;
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
                lastCheckpoint = Save();
            if (stop) throw Interrupted();  // every rank stops after the same step; rank 0 has written its checkpoint
        }
        lastCheckpoint ??= TrainingCheckpoint.Latest(outputDirectory)!;
        string modelDirectory = Path.Combine(outputDirectory, "model");
        if (rank == 0) TrainingCheckpoint.SaveModel(modelDirectory, task, policy);
        distributed?.Barrier();  // no rank reports the model before rank 0 has written it
        return new TrainerResult(modelDirectory, lastCheckpoint, state.Step, state.LastLoss, state.SkippedSteps,
            clock.Elapsed + TimeSpan.FromSeconds(state.ElapsedSeconds), history, evaluations, policy.Effective, Options.Precision);
    }

    /// <summary>Rank 0's parameters and buffers into every rank's (DDP's start), in place.</summary>
    static void Synchronize(nn.Module module, ProcessGroup group)
    {
        using var noGrad = torch.no_grad();
        foreach (var (_, parameter) in module.named_parameters()) group.Broadcast(parameter);
        foreach (var (_, buffer) in module.named_buffers()) group.Broadcast(buffer);
    }

    /// <summary>
    /// The step's loss and parts as means over ranks, whether it is finite on every rank, and whether any rank was
    /// interrupted (one all-reduce), so that every rank logs the global loss, skips the same steps and stops after
    /// the same step.
    /// </summary>
    static (bool Finite, bool Stop) Agree(ProcessGroup group, bool finite, bool interrupted, ref double loss, Dictionary<string, double> parts)
    {
        var names = parts.Keys.Order(StringComparer.Ordinal).ToArray();
        double[] values = [finite ? 0 : 1, interrupted ? 1 : 0, finite ? loss : 0, .. names.Select(n => parts[n])];
        using var sums = tensor(values);
        group.AllReduce(sums);
        var total = sums.data<double>().ToArray();
        bool stop = total[1] > 0;
        if (total[0] > 0) return (false, stop);
        loss = total[2] / group.WorldSize;
        for (int i = 0; i < names.Length; i++) parts[names[i]] = total[3 + i] / group.WorldSize;
        return (true, stop);
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
