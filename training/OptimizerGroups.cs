using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>
/// AdamW's parameter groups (nanoGPT's <c>configure_optimizers</c>): matrices decay, vectors and what a module lists
/// in <see cref="INoWeightDecay"/> do not; fine-tuning adds learning-rate scales (layer-wise decay), so the groups
/// are keyed by (decays, scale), decaying groups first, larger scales first. Frozen parameters stay out.
/// </summary>
internal sealed class OptimizerGroups : IDisposable
{
    readonly double[] scales;

    public OptimizerGroups(TrainingModule task, IReadOnlyList<(string Name, Parameter Master)> named, TrainerOptions options)
    {
        var undecayed = Undecayed(task.Module);
        var groups = named.Where(p => p.Master.requires_grad)
            .GroupBy(p => (Decays: p.Master.dim() >= 2 && !undecayed.Contains(p.Name), Scale: task.LearningRateScale(p.Name)))
            .OrderBy(g => g.Key.Decays ? 0 : 1).ThenByDescending(g => g.Key.Scale).ToList();
        if (groups.Count == 0) throw new ArgumentException($"{task.GetType().Name}: no parameter trains (every one is frozen)");
        scales = [.. groups.Select(g => g.Key.Scale)];
        Ordered = [.. groups.SelectMany(g => g)];
        Optimizer = optim.AdamW(
            [.. groups.Select(g => new AdamW.ParamGroup(g.Select(p => p.Master), lr: options.LearningRate * g.Key.Scale, beta1: options.Beta1,
                beta2: options.Beta2, weight_decay: g.Key.Decays ? options.WeightDecay : 0))], lr: options.LearningRate);
    }

    public AdamW Optimizer { get; }

    /// <summary>The parameters in the optimizer's own order, for its state in checkpoints.</summary>
    public IReadOnlyList<(string Name, Parameter Master)> Ordered { get; }

    /// <summary>Sets the step's learning rate: the schedule's value times each group's scale.</summary>
    public void SetLearningRate(double lr)
    {
        foreach (var (group, scale) in Optimizer.ParamGroups.Zip(scales)) group.LearningRate = lr * scale;
    }

    /// <summary>The full names of the parameters the module and its submodules list as not decaying.</summary>
    static HashSet<string> Undecayed(nn.Module module)
    {
        var names = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (prefix, child) in module.named_modules().Prepend(("", module)))
            if (child is INoWeightDecay listing)
                foreach (string name in listing.NoWeightDecay()) names.Add(prefix.Length == 0 ? name : $"{prefix}.{name}");
        return names;
    }

    public void Dispose() => Optimizer.Dispose();
}
