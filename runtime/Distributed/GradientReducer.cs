using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// Averages gradients over the ranks after the backward pass, as DDP does: flat buckets of about
/// <paramref name="bucketBytes"/> (DDP's 25 MB), one all-reduce each. A parameter that has a gradient on some rank
/// and none on another (a latent bank only one rank's batch selected) gets the average with zeros on every rank;
/// one with no gradient anywhere keeps none, so the optimizer treats it the same on every rank.
/// </summary>
/// <remarks>
/// DDP overlaps these all-reduces with the backward pass through gradient hooks; TorchSharp 0.107 has no
/// Tensor.register_hook or post-accumulate-grad hook, so here they run after it.
/// </remarks>
public sealed class GradientReducer(ProcessGroup group, IReadOnlyList<Parameter> parameters, long bucketBytes = 25L << 20)
{
    public void AverageGradients()
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var present = tensor(parameters.Select(p => (byte)(p.grad is null ? 0 : 1)).ToArray());
        group.AllReduce(present, ReduceOp.Max);
        var anywhere = present.data<byte>().ToArray();
        var bucket = new List<Tensor>();
        long bytes = 0;
        for (int i = 0; i < parameters.Count; i++)
        {
            if (anywhere[i] == 0) continue;
            var parameter = parameters[i];
            parameter.grad ??= zeros_like(parameter);
            var grad = parameter.grad!;
            if (bucket.Count > 0 && (grad.dtype != bucket[0].dtype || grad.device != bucket[0].device))
            {
                Flush(bucket);
                bytes = 0;
            }
            bucket.Add(grad);
            bytes += grad.numel() * grad.ElementSize;
            if (bytes >= bucketBytes)
            {
                Flush(bucket);
                bytes = 0;
            }
        }
        Flush(bucket);
    }

    void Flush(List<Tensor> bucket)
    {
        if (bucket.Count == 0) return;
        using var scope = NewDisposeScope();
        var flat = bucket.Count == 1 && bucket[0].is_contiguous() ? bucket[0] : cat(bucket.Select(g => g.flatten()).ToArray());
        group.AllReduce(flat, ReduceOp.Average);
        if (!ReferenceEquals(flat, bucket[0]))
        {
            long offset = 0;
            foreach (var grad in bucket)
            {
                grad.copy_(flat.narrow(0, offset, grad.numel()).view_as(grad));
                offset += grad.numel();
            }
        }
        bucket.Clear();
    }
}
