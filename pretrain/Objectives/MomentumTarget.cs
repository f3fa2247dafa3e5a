using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// The target network of BYOL and PixPro: an exponential moving average of the online encoder and of the heads
/// the objectives name (<see cref="Objective.TargetHead"/>). The average is kept in fp32 shadows whatever the
/// compute dtype (a 0.4% update would vanish in bf16), and copied into the target modules, which run in the
/// compute dtype and never receive gradients.
/// </summary>
public sealed class MomentumTarget : IDisposable
{
    readonly List<(string Name, Tensor Online, Tensor Target, Tensor Shadow)> pairs = [];
    readonly Dictionary<string, nn.Module> heads = [];

    public MomentumTarget(MedformerModel online, IEnumerable<Objective> objectives, ScalarType computeType, Device device)
    {
        Model = new MedformerModel(online.Config);
        Pair("model", online, Model);
        foreach (var objective in objectives)
        {
            if (objective.TargetHead is not { } head) continue;
            var copy = objective.CreateTargetHead() ?? throw new InvalidOperationException($"{objective.Task}: a target head without a factory");
            heads[objective.Task] = copy;
            Pair(objective.Task, head, copy);
        }
        using (torch.no_grad())
            foreach (var (_, online2, target, shadow) in pairs)
            {
                shadow.copy_(online2);
                target.copy_(shadow);
            }
        Model.eval();  // no dropout or stochastic depth in the target; its heads keep BatchNorm on batch statistics, as BYOL's target does
        foreach (var head in heads.Values) head.train();

        void Pair(string prefix, nn.Module onlineModule, nn.Module targetModule)
        {
            targetModule.to(device).to(computeType);
            foreach (var (name, module) in targetModule.named_modules())
                if (module is TorchSharp.Modules.LayerNorm or TorchSharp.Modules.BatchNorm1d) module.to(ScalarType.Float32);
            var targets = targetModule.named_parameters().ToDictionary(p => p.name, p => p.parameter);
            foreach (var (name, parameter) in onlineModule.named_parameters())
            {
                var target = targets[name];
                target.requires_grad = false;
                pairs.Add(($"{prefix}.{name}", parameter, target, zeros(parameter.shape, dtype: ScalarType.Float32, device: device)));
            }
        }
    }

    /// <summary>The target encoder.</summary>
    public MedformerModel Model { get; }

    /// <summary>The target encoder and heads.</summary>
    public IEnumerable<nn.Module> Modules => [Model, .. heads.Values];

    /// <summary>The target copy of an objective's head.</summary>
    public nn.Module Head(string task) => heads[task];

    /// <summary>shadow ← m·shadow + (1−m)·online, then target ← shadow.</summary>
    public void Update(double momentum)
    {
        using var scope = NewDisposeScope();
        using var noGrad = torch.no_grad();
        foreach (var (_, online, target, shadow) in pairs)
        {
            shadow.mul_(momentum).add_(online.detach().to(ScalarType.Float32), alpha: 1 - momentum);
            target.copy_(shadow);
        }
    }

    /// <summary>The fp32 shadows by name, for checkpoints.</summary>
    public IEnumerable<(string Name, Tensor Shadow)> Shadows => pairs.Select(p => (p.Name, p.Shadow));

    public void LoadShadows(IReadOnlyDictionary<string, Tensor> stored, string source)
    {
        using var noGrad = torch.no_grad();
        foreach (var (name, _, target, shadow) in pairs)
        {
            if (!stored.TryGetValue(name, out var value))
                throw new InvalidDataException($"{source}: no momentum-target weight '{name}'");
            if (!value.shape.SequenceEqual(shadow.shape))
                throw new InvalidDataException($"{source}: '{name}' is [{string.Join(",", value.shape)}], expected [{string.Join(",", shadow.shape)}]");
            shadow.copy_(value);
            target.copy_(shadow);
        }
    }

    public void Dispose()
    {
        foreach (var (_, _, _, shadow) in pairs) shadow.Dispose();
        Model.Dispose();
        foreach (var head in heads.Values) head.Dispose();
    }
}
