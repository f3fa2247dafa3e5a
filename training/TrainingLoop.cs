using System.Diagnostics;
using Medformer.Datasets.Loading;
using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>One run of <see cref="Trainer.Fit"/>: what it holds between steps (precision policy, optimizer, state, log window) and its steps.</summary>
internal sealed class TrainingLoop : IDisposable
{
    readonly TrainerOptions options;
    readonly Device device;
    readonly Action<string>? notice;
    readonly ProcessGroup? distributed;
    readonly TrainingModule task;
    readonly string outputDirectory;
    readonly CancellationToken cancel;
    readonly MixedPrecision policy;
    readonly BatchAdaptation? adaptation;
    readonly AdaptiveStep? adaptive;
    readonly OptimizerGroups groups;
    readonly Parameter[] masters;
    readonly GradientReducer? reducer;
    readonly int world, rank;
    readonly List<TrainerLog> history = [];
    readonly List<(long, IReadOnlyDictionary<string, double>)> evaluations = [];
    readonly EtaEstimate eta = new();
    TrainerState state;
    long checkpointed = -1;  // the step whose checkpoint is on disk (written or resumed from)
    string? lastCheckpoint;
    Stopwatch clock = new();
    LogWindow? window;

    public TrainingLoop(TrainerOptions options, Device device, Action<string>? notice, ProcessGroup? group, TrainingModule task,
        string outputDirectory, CancellationToken cancel)
    {
        (this.options, this.device, this.notice, this.task, this.outputDirectory, this.cancel) = (options, device, notice, task, outputDirectory, cancel);
        distributed = group is { WorldSize: > 1 } ? group : null;
        if (distributed is not null && options.BatchAdaptation is { Enabled: true })
            throw new ArgumentException($"batch_adaptation selects samples by their per-sample gradients on one process; it is not supported with data " +
                $"parallel ({distributed.WorldSize} processes): run it in one process");
        Directory.CreateDirectory(outputDirectory);
        task.Module.to(device);
        if (distributed is not null) Synchronize(task.Module, distributed);
        policy = MixedPrecision.Create(task.Module, options.Precision, device, notice);
        var named = policy.NamedMasterParameters.ToList();
        try
        {
            task.Prepare(policy.ComputeType, device);
            if (options.BatchAdaptation is { Enabled: true } adaptationOptions)
            {
                if (policy.Scaler is not null)
                    throw new ArgumentException("batch_adaptation: fp16's loss scaling is not supported with per-sample gradients; use bf16 or fp32");
                adaptation = new BatchAdaptation(adaptationOptions);
                adaptive = new AdaptiveStep(adaptation, task);
            }
            groups = new OptimizerGroups(task, named, options);
        }
        catch
        {
            adaptive?.Dispose();
            policy.Dispose();
            throw;
        }
        (world, rank) = (distributed?.WorldSize ?? 1, distributed?.Rank ?? 0);
        state = new TrainerState
        {
            Seed = options.Seed, Precision = policy.Effective.Name(), RequestedPrecision = options.Precision.Name(), MaxSteps = options.MaxSteps,
            Accumulation = options.Accumulation, WorldSize = world, RunId = options.RunId,
        };
        masters = [.. named.Select(p => p.Master)];
        reducer = distributed is null ? null : new GradientReducer(distributed, masters);
    }

    /// <summary>Continues from the newest whole checkpoint: its weights, optimizer, state and the loader's position.</summary>
    public void Resume()
    {
        string from = TrainingCheckpoint.Latest(outputDirectory)
            ?? throw new ArgumentException($"--resume: no checkpoint in {outputDirectory} to resume from");
        state = TrainingCheckpoint.Load(from, task, policy, groups.Optimizer, groups.Ordered);
        if (state.Seed != options.Seed) throw new ArgumentException($"--resume: {from} was trained with seed {state.Seed}, not {options.Seed}");
        if (state.Accumulation != options.Accumulation)
            throw new ArgumentException($"--resume: {from} was trained with accumulation {state.Accumulation}, not " +
                $"{options.Accumulation}; the loader's position depends on it");
        if (state.MaxSteps != options.MaxSteps)
            notice?.Invoke($"max_steps is {options.MaxSteps} where {from} was trained towards {state.MaxSteps}: the learning-rate schedule from " +
                "here differs from the original run's");
        state.MaxSteps = options.MaxSteps;
        if (state.WorldSize != world)
            notice?.Invoke($"{from} was trained on {state.WorldSize} process(es), this run has {world}: each rank resumes at batch {state.LoaderPosition} of " +
                "its shard, which continues the interrupted pass exactly when the global batch (batch size × processes) is unchanged");
        state.WorldSize = world;
        (state.Precision, state.RequestedPrecision) = (policy.Effective.Name(), options.Precision.Name());
        state.RunId = options.RunId ?? state.RunId;
        checkpointed = state.Step;
        if (adaptation is not null && state.BatchAdaptation is { } adapted) adaptation.Restore(adapted);
        else if (adaptation is not null) notice?.Invoke($"{from} was trained without batch adaptation: it starts here at batch size {adaptation.CurrentBatch}");
        else if (state.BatchAdaptation is not null) notice?.Invoke($"{from} was trained with batch adaptation; this run takes the loader's whole batches");
        notice?.Invoke($"resuming from {from} at step {state.Step}");
    }

    public TrainerResult Run(Func<long, IEnumerable<Batch>> batches, Action<TrainerLog>? log, Func<long, IReadOnlyDictionary<string, double>>? evaluate)
    {
        clock = Stopwatch.StartNew();
        window = new LogWindow(state.Step, distributed?.CommunicationTime ?? TimeSpan.Zero);
        using var stream = batches(state.LoaderPosition).GetEnumerator();
        task.Module.train();
        while (state.Step < options.MaxSteps)
        {
            if (distributed is null && cancel.IsCancellationRequested) throw Interrupted();  // data parallel: the ranks agree on stopping, in Step
            bool stop = Step(stream);
            bool last = state.Step == options.MaxSteps;
            if (state.Step % options.LogEvery == 0 || last) Log(log);
            if (evaluate is not null && options.EvaluateEvery > 0 && (state.Step % options.EvaluateEvery == 0 || last))
            {
                task.Module.eval();
                evaluations.Add((state.Step, evaluate(state.Step)));
                task.Module.train();
            }
            if ((options.CheckpointEvery > 0 && state.Step % options.CheckpointEvery == 0) || last) lastCheckpoint = Save();
            if (stop) throw Interrupted();  // every rank stops after the same step; rank 0 has written its checkpoint
        }
        lastCheckpoint ??= TrainingCheckpoint.Latest(outputDirectory)!;
        string modelDirectory = Path.Combine(outputDirectory, "model");
        if (rank == 0) TrainingCheckpoint.SaveModel(modelDirectory, task, policy);
        distributed?.Barrier();  // no rank reports the model before rank 0 has written it
        return new TrainerResult(modelDirectory, lastCheckpoint, state.Step, state.LastLoss, state.SkippedSteps,
            clock.Elapsed + TimeSpan.FromSeconds(state.ElapsedSeconds), history, evaluations, policy.Effective, options.Precision);
    }

    /// <summary>One optimizer step over <see cref="TrainerOptions.Accumulation"/> micro-batches; true when the ranks agreed to stop after it.</summary>
    bool Step(IEnumerator<Batch> stream)
    {
        long step = state.Step;
        double lr = options.LearningRateAt(step);
        groups.SetLearningRate(lr);
        double loss = 0;
        bool stop = false;
        var parts = new Dictionary<string, double>();
        using (var scope = NewDisposeScope())
        {
            IReadOnlyList<int>? selected = null;
            for (int micro = 0; micro < options.Accumulation; micro++)
                selected = MicroStep(stream, step, micro, ref loss, parts) ?? selected;
            bool finite = policy.UnscaleGradients() && double.IsFinite(loss);
            if (distributed is not null)
            {
                distributed.ThrowIfFailed();  // a collective inside the backward pass failed
                reducer!.AverageGradients();
                (finite, stop) = Agree(distributed, finite, cancel.IsCancellationRequested, ref loss, parts);
            }
            double norm = finite ? GradientNorm(masters, options.GradClip) : double.NaN;
            finite &= double.IsFinite(norm);
            if (finite && policy.Step(groups.Optimizer))
            {
                state.NonFiniteInARow = 0;
                task.AfterStep(step, options.MaxSteps);
                window!.AddStep(loss, norm, parts);
            }
            else Skip(step, loss);
            policy.ZeroGrad(groups.Optimizer);
            if (selected is not null) adaptation!.Update(selected);  // the next step's batch size
        }
        state.Step = step + 1;
        state.LearningRate = lr;
        state.LossScale = policy.Scaler?.Scale;
        state.LossScaleGrowthTracker = policy.Scaler?.GrowthTracker;
        return stop;
    }

    /// <summary>Forward and backward of one micro-batch; the samples batch adaptation selected, or null without it.</summary>
    IReadOnlyList<int>? MicroStep(IEnumerator<Batch> stream, long step, int micro, ref double loss, Dictionary<string, double> parts)
    {
        if (!stream.MoveNext()) throw new InvalidOperationException("the loader ran out of batches");
        using var loaded = stream.Current;
        using var head = adaptation is not null && adaptation.CurrentBatch < loaded.Count ? Trainer.Take(loaded, adaptation.CurrentBatch) : null;
        var batch = head ?? loaded;
        // Ranks draw independently (rank 0 as a single process does, so one-process runs keep their streams).
        long seed = Seeding.Derive(options.Seed, rank == 0 ? "step" : $"step/rank{rank}", step * options.Accumulation + micro);
        torch.manual_seed(seed);  // dropout, stochastic depth: the global generator, reseeded per micro-step
        using var generator = new Generator((ulong)seed, device);
        var context = distributed is null ? new StepContext(step, generator, policy.Cast)
            : new StepContext(step, generator, policy.Cast, distributed.AllGatherWithGradient, distributed.AllReduceSumWithGradient, rank);
        window!.AddSamples(batch.Count * world);
        if (adaptive is not null)
        {
            using var candidates = new Generator((ulong)Seeding.Derive(options.Seed, "batch-adaptation", step), CPU);
            var result = adaptive.Backward(batch, context, candidates, policy);
            loss = result.Loss;
            foreach (var (name, part) in result.Parts) parts[name] = part;
            window.AddAdapted(result.Count, BatchAdaptation.Median(result.Selected));
            return result.Selected;
        }
        var (microLoss, microParts) = task.Loss(batch, context);
        policy.Backward(options.Accumulation == 1 ? microLoss : microLoss / options.Accumulation);
        loss += microLoss.item<float>() / options.Accumulation;
        foreach (var (name, part) in microParts) parts[name] = parts.GetValueOrDefault(name) + part.item<float>() / options.Accumulation;
        return null;
    }

    /// <summary>A step whose loss or gradients were not finite: no update; too many in a row end the run.</summary>
    void Skip(long step, double loss)
    {
        state.SkippedSteps++;
        state.NonFiniteInARow++;
        if (state.NonFiniteInARow >= options.MaxNonFiniteInARow)
            throw new TrainingDivergedException($"step {step}: the loss or the gradients were not finite {state.NonFiniteInARow} steps in a row (last loss " +
                $"{loss}); lower the learning rate, or use bf16 rather than fp16");
    }

    void Log(Action<TrainerLog>? log)
    {
        var entry = window!.Close(state.Step, options.MaxSteps, state.LearningRate, clock.Elapsed + TimeSpan.FromSeconds(state.ElapsedSeconds),
            windowSeconds => eta.Remaining(state.Step, options.MaxSteps, clock.Elapsed, windowSeconds), state.SkippedSteps, distributed?.CommunicationTime);
        history.Add(entry);
        state.LastLoss = entry.Loss;
        log?.Invoke(entry);
    }

    string Save()
    {
        state.BatchAdaptation = adaptation?.Snapshot();
        double elapsedBefore = state.ElapsedSeconds;
        state.ElapsedSeconds += clock.Elapsed.TotalSeconds;
        string folder = rank == 0
            ? TrainingCheckpoint.Save(outputDirectory, task, policy, groups.Optimizer, groups.Ordered, state, options.KeepCheckpoints)
            : TrainingCheckpoint.PathOf(outputDirectory, state.Step);
        state.ElapsedSeconds = elapsedBefore;
        checkpointed = state.Step;
        NativeHeap.ReleaseFreed();  // the checkpoint's buffers are freed: give the pages back, or RSS keeps their high-water mark for days
        return folder;
    }

    /// <summary>Ctrl-C or SIGTERM: the step in progress has finished; its checkpoint is written (unless it just was), and the run stops.</summary>
    TrainingInterruptedException Interrupted() =>
        new(state.Step, checkpointed == state.Step ? TrainingCheckpoint.PathOf(outputDirectory, state.Step) : Save(), cancel);

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

    /// <summary>The global L2 norm of the gradients, clipped to <paramref name="clip"/> when it is positive.</summary>
    static double GradientNorm(Parameter[] parameters, double clip)
    {
        var withGrad = parameters.Where(p => p.grad is not null).ToArray();
        if (withGrad.Length == 0) return 0;
        if (clip > 0) return nn.utils.clip_grad_norm_(withGrad, clip);
        using var scope = NewDisposeScope();
        return stack(withGrad.Select(p => p.grad!.to(ScalarType.Float32).norm())).norm().item<float>();
    }

    public void Dispose()
    {
        groups.Dispose();
        adaptive?.Dispose();
        policy.Dispose();
    }
}
