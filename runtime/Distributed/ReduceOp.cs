namespace Medformer.Runtime.Distributed;

/// <summary>How <see cref="ProcessGroup.AllReduce"/> combines the ranks' tensors (torch.distributed.ReduceOp).</summary>
public enum ReduceOp
{
    Sum = 0,
    Min = 1,
    Max = 2,
    /// <summary>The sum divided by the world size (floating-point tensors only).</summary>
    Average = 3,
}
