using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// The weights of a training run by the file a checkpoint keeps them in, found from the task's module tree rather
/// than from names: <see cref="Model"/>, the Medformer's fp32 masters under the Medformer's own names
/// (model.safetensors, which loads as a model checkpoint), and <see cref="Task"/>, every other master under its name
/// in <see cref="TrainingModule.Module"/> (heads.safetensors: objectives' projectors, a fine-tuned head). The
/// optimizer's state (optimizer.safetensors) is keyed by the masters' names in the module, as <see cref="Task"/> is.
/// </summary>
internal sealed record CheckpointParts(IReadOnlyDictionary<string, Tensor> Model, IReadOnlyDictionary<string, Tensor> Task)
{
    public static CheckpointParts Of(TrainingModule task, MixedPrecision policy)
    {
        string at = task.Module.named_modules().FirstOrDefault(m => ReferenceEquals(m.module, task.Model)).name
            ?? (ReferenceEquals(task.Module, task.Model) ? ""
                : throw new InvalidOperationException($"{task.GetType().Name}: its Module does not hold its Model"));
        string prefix = at.Length == 0 ? "" : at + ".";
        var ownNames = task.Model.named_parameters().ToDictionary(p => prefix + p.name, p => p.name, StringComparer.Ordinal);
        var model = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var rest = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        foreach (var (name, master) in policy.NamedMasterParameters)
        {
            if (ownNames.TryGetValue(name, out var own)) model[own] = master;
            else rest[name] = master;
        }
        return new CheckpointParts(model, rest);
    }
}
