namespace Medformer.Runtime;

/// <summary>
/// Dynamic loss scaling for fp16, as <c>torch.cuda.amp.GradScaler</c>: the loss is multiplied by <see cref="Scale"/>
/// so small gradients survive fp16; a step whose gradients overflow is skipped and the scale halved, and after
/// <see cref="GrowthInterval"/> finite steps in a row the scale doubles.
/// </summary>
public sealed class GradScaler(double initScale = 65536.0, double growthFactor = 2.0, double backoffFactor = 0.5, int growthInterval = 2000)
{
    public double Scale { get; private set; } = initScale;
    public double GrowthFactor { get; } = growthFactor;
    public double BackoffFactor { get; } = backoffFactor;
    public int GrowthInterval { get; } = growthInterval;
    /// <summary>Finite steps since the scale last changed.</summary>
    public int GrowthTracker { get; private set; }

    public void Update(bool finite)
    {
        if (!finite)
        {
            Scale *= BackoffFactor;
            GrowthTracker = 0;
            return;
        }
        if (++GrowthTracker >= GrowthInterval)
        {
            Scale *= GrowthFactor;
            GrowthTracker = 0;
        }
    }

    /// <summary>The state a checkpoint keeps, as plain numbers.</summary>
    public (double Scale, int GrowthTracker) State => (Scale, GrowthTracker);

    public void Restore(double scale, int growthTracker)
    {
        if (!(scale > 0) || double.IsInfinity(scale)) throw new ArgumentOutOfRangeException(nameof(scale), scale, "a loss scale must be positive and finite");
        Scale = scale;
        GrowthTracker = growthTracker;
    }
}
