using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Pretrain;

/// <summary>
/// Mixed self-supervised pretraining as a training task: the shared Medformer and the objectives' heads, one
/// weighted loss per batch, and the momentum target network when an objective reads it (its average moves from
/// <c>momentum</c> towards 1 on BYOL's cosine schedule).
/// </summary>
public sealed class Pretraining : TrainingModule
{
    private readonly Network network;
    private readonly (Objective Objective, double Weight)[] mix;
    private readonly double momentum;
    private MomentumTarget? target;

    public Pretraining(MedformerModel model, IReadOnlyList<(Objective Objective, double Weight)> objectives, double momentum = 0.99,
        BrainFuseViews? brainFuse = null)
    {
        if (brainFuse is not null && !objectives.Any(o => o.Objective.MixesViews))
            throw new ArgumentException($"brainfuse: mixes the views of instance objectives (barlow, simclr); objectives " +
                $"{string.Join(", ", objectives.Select(o => o.Objective.Task))} have none");
        BrainFuse = brainFuse;
        if (objectives.Count == 0) throw new ArgumentException("pretraining needs at least one objective");
        foreach (var (objective, weight) in objectives)
            if (!(weight > 0) || !double.IsFinite(weight)) throw new ArgumentException($"objective '{objective.Task}': weight {weight} must be positive");
        if (objectives.Select(o => o.Objective.Task).Distinct().Count() != objectives.Count) throw new ArgumentException("an objective appears twice");
        if (momentum is < 0 or >= 1) throw new ArgumentException($"momentum {momentum} must be in [0, 1)");
        mix = [.. objectives];
        this.momentum = momentum;
        foreach (var (objective, _) in mix) InitHeads(objective);
        network = new Network(model, mix.Select(o => o.Objective));
    }

    public override nn.Module Module => network;

    /// <summary>Heads start as the model's layers do (truncated normal, std 0.02, zero bias), so classifiers start at chance.</summary>
    static void InitHeads(Objective objective) => Runtime.Init.TruncatedNormalLinears(objective);

    public override MedformerModel Model => network.Model;

    public IReadOnlyList<Objective> Objectives => [.. mix.Select(o => o.Objective)];

    /// <summary>Views the loader must supply: the most any objective needs.</summary>
    public int Views => mix.Max(o => o.Objective.Views);

    public bool TrackCoordinates => mix.Any(o => o.Objective.TrackCoordinates);

    /// <summary>The momentum target network, while prepared and when an objective reads it.</summary>
    public MomentumTarget? Target => target;

    public override void Prepare(ScalarType computeType, Device device)
    {
        target?.Dispose();
        target = mix.Any(o => o.Objective.UsesMomentumTarget) ? new MomentumTarget(Model, Objectives, computeType, device) : null;
    }

    /// <summary>BrainFuse mixes as the instance objectives' views (null: off).</summary>
    public BrainFuseViews? BrainFuse { get; }

    /// <summary>Each objective's chance loss (<see cref="Objective.ChanceLoss"/>) on the first batch this task saw; empty before.</summary>
    public IReadOnlyDictionary<string, double> ChanceLosses => chanceLosses ?? new Dictionary<string, double>();

    Dictionary<string, double>? chanceLosses;

    void MeasureChance(Batch batch, PretrainStep step)
    {
        if (chanceLosses is not null) return;
        using var _ = no_grad();
        chanceLosses = [];
        foreach (var (objective, _) in mix)
            if (objective.ChanceLoss(batch, step) is { } chance) chanceLosses[objective.Task] = chance;
    }

    public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext context)
    {
        var step = Step(context);
        MeasureChance(batch, step);
        using var scope = NewDisposeScope();
        var parts = new Dictionary<string, Tensor>();
        Tensor? total = null;
        // One draw of mixes per step, from the step's generator, shared by every objective that mixes views.
        var (mixes, mixed) = BrainFuse is { } fuse && network.training ? fuse.Mix(batch, step.Generator) : (null, null);
        using var _ = mixes;
        foreach (var (objective, weight) in mix)
        {
            Tensor loss;
            if (mixes is not null && objective.MixesViews)
            {
                var (pairLoss, first, second) = objective.LossAndProjections(Model, mixed!, step);
                loss = pairLoss;
                parts[objective.Task] = pairLoss.detach();
                if (BrainFuse!.ConsistencyWeight > 0)
                {
                    // The objective's own loss is its part; the consistency term (before λ) is a part of its own.
                    var consistency = BrainFuse.Consistency(objective, Model, batch, mixes, first, second, step);
                    parts[$"{objective.Task}_consistency"] = consistency.detach();
                    loss = loss + consistency * BrainFuse.ConsistencyWeight;
                }
            }
            else
            {
                loss = objective.Loss(Model, batch, step);
                parts[objective.Task] = loss.detach();
            }
            total = total is null ? loss * weight : total + loss * weight;
        }
        scope.MoveToOuter(total!);
        foreach (var part in parts.Values) scope.MoveToOuter(part);
        return (total!, parts);
    }

    public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext context)
    {
        if (NoPerSampleLoss is { } why) throw new NotSupportedException(why);
        var step = Step(context);
        MeasureChance(batch, step);
        using var scope = NewDisposeScope();
        var parts = new Dictionary<string, Tensor>();
        Tensor? total = null;
        foreach (var (objective, weight) in mix)
        {
            var losses = objective.PerSampleLoss(Model, batch, step);                                   // [B]
            parts[objective.Task] = losses.detach();
            total = total is null ? losses * weight : total + losses * weight;
        }
        scope.MoveToOuter(total!);
        foreach (var part in parts.Values) scope.MoveToOuter(part);
        return (total!, parts);
    }

    /// <summary>
    /// The objectives' view of the step: the trainer's context and the momentum target. The projectors' BatchNorm
    /// spans every rank with the context's sum over ranks (SyncBatchNorm), the target's projectors too.
    /// </summary>
    PretrainStep Step(StepContext context)
    {
        if (context.AllReduceSum is { } reduce && !ReferenceEquals(reduce, projectorsReduce))
        {
            foreach (var module in Module.modules().Concat(target?.Modules.SelectMany(m => m.modules()) ?? []))
                if (module is Projector projector) projector.AllReduceSum = reduce;
            projectorsReduce = reduce;
        }
        return context as PretrainStep ?? new PretrainStep(context, target);
    }

    Func<Tensor, Tensor>? projectorsReduce;

    public override string? NoPerSampleLoss
    {
        get
        {
            var coupled = mix.Where(o => !o.Objective.PerSample).Select(o => o.Objective.Task).ToArray();
            return coupled.Length == 0 ? null
                : $"objective{(coupled.Length > 1 ? "s" : "")} {string.Join(", ", coupled)} couple the samples of a batch (one sample's loss reads the others' "
                  + "embeddings or statistics), so a sample has no gradient of its own; batch adaptation needs per-sample " +
                      "objectives (rotation, jigsaw, inpainting)";
        }
    }

    public override IReadOnlyList<Linear> LastLayers => [.. mix.SelectMany(o => o.Objective.LastLayers)];

    public override void AfterStep(long step, long maxSteps)
    {
        // BYOL: τ = 1 − (1 − τ_base)·(cos(πk/K) + 1)/2.
        target?.Update(1 - (1 - momentum) * (Math.Cos(Math.PI * step / maxSteps) + 1) / 2);
    }

    public override IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> ExtraState() =>
        target is null
            ? new Dictionary<string, IReadOnlyDictionary<string, Tensor>>()
            : new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { ["ema.safetensors"] = target.Shadows.ToDictionary(s => s.Name, s => s.Shadow) };

    public override void LoadExtraState(string file, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        if (file == "ema.safetensors" && target is not null) target.LoadShadows(tensors, source);
    }

    public override void Dispose()
    {
        target?.Dispose();
        network.Dispose();
    }

    /// <summary>The trainable parameters: "model.*" (the Medformer) and "objectives.&lt;task&gt;.*" (each objective's heads).</summary>
    private sealed class Network : nn.Module
    {
        private readonly MedformerModel model;
        private readonly ObjectiveSet objectives;

        public Network(MedformerModel model, IEnumerable<Objective> objectives) : base("Pretraining")
        {
            this.model = model;
            this.objectives = new ObjectiveSet(objectives);
            RegisterComponents();
        }

        public MedformerModel Model => model;
    }

    /// <summary>The objectives under their task names. (TorchSharp 0.107's ModuleDict breaks Module.to(dtype): two indexers both named "Item".)</summary>
    private sealed class ObjectiveSet : nn.Module
    {
        public ObjectiveSet(IEnumerable<Objective> objectives) : base("Objectives")
        {
            foreach (var objective in objectives) register_module(objective.Task, objective);
        }
    }
}
