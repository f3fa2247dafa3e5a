using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// A training checkpoint folder, <c>checkpoint-NNNNNN/</c>: what a model checkpoint holds (config.json,
/// model.safetensors: the Medformer's fp32 master weights) plus heads.safetensors (the task's other weights),
/// optimizer.safetensors (AdamW's moments and step per parameter, by name), the task's extra state (e.g.
/// ema.safetensors) and trainer.json. Written whole or not at all (<see cref="AtomicDirectory"/>), so a run killed
/// mid-write resumes from the previous one.
/// </summary>
public static class TrainingCheckpoint
{
    public const string Prefix = "checkpoint-";
    const string Heads = "heads.safetensors", Optimizer = "optimizer.safetensors", State = "trainer.json";

    /// <summary>The newest whole checkpoint in <paramref name="outputDirectory"/>, or null.</summary>
    public static string? Latest(string outputDirectory) =>
        !Directory.Exists(outputDirectory) ? null : Directory.EnumerateDirectories(outputDirectory, Prefix + "*")
            .Where(d => long.TryParse(Path.GetFileName(d)[Prefix.Length..], out _) && File.Exists(Path.Combine(d, State)))
            .OrderBy(d => long.Parse(Path.GetFileName(d)[Prefix.Length..]))
            .LastOrDefault();

    /// <summary>The tracking run a checkpoint's training reported to (trainer.json's run_id), or null.</summary>
    public static string? RunIdOf(string folder)
    {
        string path = Path.Combine(folder, State);
        try
        {
            return JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(path), TrainerState.Json)?.RunId;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not a trainer state ({e.Message})", e);
        }
    }

    /// <summary>Where the checkpoint of <paramref name="step"/> goes.</summary>
    public static string PathOf(string outputDirectory, long step) => Path.Combine(outputDirectory, $"{Prefix}{step:D6}");

    internal static string Save(string outputDirectory, TrainingModule task, MixedPrecision policy, AdamW optimizer,
        IReadOnlyList<(string Name, Parameter Master)> ordered, TrainerState state, int keep)
    {
        string folder = PathOf(outputDirectory, state.Step);
        state.LoaderPosition = state.Step * state.Accumulation;
        var parts = CheckpointParts.Of(task, policy);
        var extra = new Dictionary<string, Action<string>>
        {
            [Heads] = path => Safetensors.Save(parts.Task, path),
            [Optimizer] = path => SaveOptimizer(optimizer, ordered, path),
            [State] = path => File.WriteAllText(path, JsonSerializer.Serialize(state, TrainerState.Json)),
        };
        foreach (var (file, tensors) in task.ExtraState()) extra[file] = path => Safetensors.Save(tensors, path);
        var metadata = new Dictionary<string, string> { ["step"] = state.Step.ToString() };
        Checkpoint.Save(task.Model.Config, parts.Model, folder, metadata, extra);
        foreach (string old in Directory.EnumerateDirectories(outputDirectory, Prefix + "*")
                     .Where(d => long.TryParse(Path.GetFileName(d)[Prefix.Length..], out _))
                     .OrderByDescending(d => long.Parse(Path.GetFileName(d)[Prefix.Length..])).Skip(keep))
            Directory.Delete(old, recursive: true);
        return folder;
    }

    /// <summary>The final model folder (config.json + model.safetensors, fp32, and the task's <see cref="TrainingModule.ModelFiles"/>), what fine-tuning starts
    /// from.</summary>
    internal static void SaveModel(string folder, TrainingModule task, MixedPrecision policy)
    {
        var parts = CheckpointParts.Of(task, policy);
        Checkpoint.Save(task.Model.Config, parts.Model, folder, extraFiles: task.ModelFiles(parts.Task));
    }

    static void SaveOptimizer(AdamW optimizer, IReadOnlyList<(string Name, Parameter Master)> ordered, string path)
    {
        using var scope = NewDisposeScope();
        var states = optimizer.state_dict().State;
        if (states.Count != ordered.Count) throw new InvalidOperationException($"the optimizer holds {states.Count} states for {ordered.Count} parameters");
        var tensors = new Dictionary<string, Tensor>();
        for (int i = 0; i < states.Count; i++)
        {
            var s = (AdamW.State)states[i];
            string name = ordered[i].Name;
            tensors[$"{name}.exp_avg"] = s.exp_avg;
            tensors[$"{name}.exp_avg_sq"] = s.exp_avg_sq;
            tensors[$"{name}.step"] = tensor(s.step);
        }
        Safetensors.Save(tensors, path);
    }

    internal static TrainerState Load(string folder, TrainingModule task, MixedPrecision policy, AdamW optimizer,
        IReadOnlyList<(string Name, Parameter Master)> ordered)
    {
        string statePath = Path.Combine(folder, State);
        TrainerState state;
        try
        {
            state = JsonSerializer.Deserialize<TrainerState>(File.ReadAllText(statePath), TrainerState.Json)
                ?? throw new InvalidDataException($"{statePath}: empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{statePath}: not a trainer state ({e.Message})", e);
        }
        var parts = CheckpointParts.Of(task, policy);
        StrictLoad.Load(Path.Combine(folder, Checkpoint.WeightsFile), parts.Model, "this run's model");
        StrictLoad.Load(Path.Combine(folder, Heads), parts.Task, "this run's objectives or head");
        using var scope = NewDisposeScope();
        using (torch.no_grad())
        {
            policy.SyncModelFromMasters();
            var stored = Read(Path.Combine(folder, Optimizer));
            var states = optimizer.state_dict().State;
            for (int i = 0; i < states.Count; i++)
            {
                var s = (AdamW.State)states[i];
                string name = ordered[i].Name;
                s.exp_avg.copy_(Require(stored, $"{name}.exp_avg", folder));
                s.exp_avg_sq.copy_(Require(stored, $"{name}.exp_avg_sq", folder));
                s.step = Require(stored, $"{name}.step", folder).item<long>();
            }
        }
        foreach (var file in task.ExtraState().Keys)
            task.LoadExtraState(file, Read(Path.Combine(folder, file)), Path.Combine(folder, file));
        if (policy.Scaler is { } scaler && state.LossScale is { } scale) scaler.Restore(scale, state.LossScaleGrowthTracker ?? 0);
        return state;
    }

    static Dictionary<string, Tensor> Read(string path)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: missing from the checkpoint");
        return Safetensors.Load(path);
    }

    static Tensor Require(Dictionary<string, Tensor> stored, string key, string folder) =>
        stored.TryGetValue(key, out var value) ? value : throw new InvalidDataException($"{folder}/{Optimizer}: no '{key}'");
}
