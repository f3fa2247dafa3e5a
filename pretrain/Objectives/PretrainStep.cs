using Medformer.Training;

namespace Medformer.Pretrain.Objectives;

/// <summary>The trainer's step context with what the objectives add: the momentum target network (BYOL, PixPro).</summary>
public sealed record PretrainStep : StepContext
{
    public PretrainStep(StepContext step, MomentumTarget? target) : base(step) => Target = target;

    public MomentumTarget? Target { get; }
}
