using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>
/// Makes a super-resolution pair of a sample, the last step of a pipeline: the image becomes the target [C,…], and
/// the input is that image averaged over <see cref="Scale"/>-pixel blocks (area downsampling, as a coarser
/// acquisition integrates over larger voxels) [C,…/scale], its spacing scaled to match. Sizes must be multiples of
/// the scale. Any earlier target is dropped.
/// </summary>
public sealed record SuperResolutionPair(int Scale) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        if (Scale is not (2 or 4)) throw new ArgumentException($"SuperResolutionPair: scale {Scale} must be 2 or 4");
        var spatial = sample.Image.shape[1..];
        if (spatial.Length is not (2 or 3) || spatial.Any(n => n % Scale != 0))
            throw new ArgumentException($"{sample.Meta}: [{string.Join(",", sample.Image.shape)}] cannot be downsampled ×{Scale}: every " +
                "spatial size must be a multiple of it");
        using var scope = NewDisposeScope();
        var image = sample.Image.to(ScalarType.Float32).unsqueeze(0);
        long[] kernel = [.. Enumerable.Repeat((long)Scale, spatial.Length)];
        var low = (spatial.Length == 2 ? F.avg_pool2d(image, kernel) : F.avg_pool3d(image, kernel)).squeeze(0);
        var meta = sample.Meta with { Spacing = [.. sample.Meta.Spacing.Select(s => s * Scale)] };
        var target = sample.Image.to(ScalarType.Float32).clone();
        scope.MoveToOuter(low, target);
        return new Sample(low, meta, target);
    }
}
