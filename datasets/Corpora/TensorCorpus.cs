using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// A corpus over tensors already in memory (PyTorch's TensorDataset): images [N,C,H,W] or [N,C,D,H,W], optional
/// labels [N] or [N,L] and targets [N,…]. Every sample shares <paramref name="organ"/> and
/// <paramref name="modality"/>. The corpus keeps its own copies; each <see cref="Get"/> returns new tensors.
/// </summary>
public sealed class TensorCorpus : ICorpus, IDisposable
{
    readonly Tensor images;
    readonly Tensor? labels, targets;
    readonly string organ, modality;

    public TensorCorpus(string name, Tensor images, Tensor? labels = null, Tensor? targets = null, string organ = "other", string modality = "other")
    {
        if (images.dim() is not (4 or 5))
            throw new ArgumentException($"corpus '{name}': images must be [N,C,H,W] or [N,C,D,H,W], not [{string.Join(",", images.shape)}]");
        if (labels is not null && (labels.dim() is not (1 or 2) || labels.shape[0] != images.shape[0]))
            throw new ArgumentException($"corpus '{name}': labels [{string.Join(",", labels.shape)}] must be [N] or [N,L] with N = {images.shape[0]}");
        if (targets is not null && targets.shape[0] != images.shape[0])
            throw new ArgumentException($"corpus '{name}': targets [{string.Join(",", targets.shape)}] must have N = {images.shape[0]} rows");
        Name = name;
        this.images = Own(images, ScalarType.Float32);
        this.labels = labels is null ? null : Own(labels, ScalarType.Int64);
        this.targets = targets is null ? null : Own(targets, targets.dtype);
        this.organ = organ;
        this.modality = modality;
    }

    /// <summary>
    /// A CPU copy that outlives any dispose scope the caller is in: a corpus built inside a training step's scope
    /// would otherwise lose its tensors with the step's temporaries.
    /// </summary>
    static Tensor Own(Tensor source, ScalarType type)
    {
        using var scope = NewDisposeScope();
        return source.detach().to(type, CPU).clone().DetachFromDisposeScope();
    }

    public string Name { get; }

    public long Count => images.shape[0];

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"corpus '{Name}' has {Count} samples");
        long[] label = labels is null ? [] : labels.dim() == 1 ? [labels[index].item<long>()] : labels[index].data<long>().ToArray();
        bool volume = images.dim() == 5;
        var meta = new SampleMeta(Name, $"{Name}[{index}]", index, organ, modality, volume ? Dimensionality.Volume : Dimensionality.Image,
            volume ? [1.0, 1.0, 1.0] : [1.0, 1.0], label);
        return new Sample(images[index].clone(), meta, targets?[index].clone());
    }

    public void Dispose()
    {
        images.Dispose();
        labels?.Dispose();
        targets?.Dispose();
    }
}
