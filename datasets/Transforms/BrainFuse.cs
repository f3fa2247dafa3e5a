using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>How <see cref="BrainFuse"/> weighs its parts.</summary>
public enum MixWeights
{
    /// <summary>One convex combination for the whole image: weights ~ Dirichlet(α).</summary>
    Dirichlet,

    /// <summary>
    /// A weight map per part, smooth in space: independent Dirichlet(α) draws on a coarse control grid, interpolated
    /// (bilinear/trilinear, align_corners=True) to the image, so the weights stay non-negative and sum to 1 everywhere.
    /// </summary>
    Spatial,
}

/// <summary>
/// BrainFuse-style mixing of K ≥ 2 subjects (samples with one grid, channel count and dimensionality) into one
/// image, with the weights and soft targets a consistency objective needs (see <see cref="MixedSample"/>).
/// <paramref name="Alpha"/> is the Dirichlet concentration (1 = uniform over the simplex; small = nearly one part;
/// large = nearly equal parts). <paramref name="ControlGrid"/> (Spatial only) is the control points per axis (one
/// value for all axes or one per axis, each ≥ 2). <paramref name="ClassCount"/> &gt; 0 gives soft masks and soft
/// labels; <paramref name="MultiLabel"/> reads the meta's labels as 0/1 per class rather than one class index.
/// </summary>
public sealed record BrainFuse(double Alpha = 1.0, MixWeights Weights = MixWeights.Dirichlet, long[]? ControlGrid = null, int ClassCount = 0,
    bool MultiLabel = false)
    : IMixTransform
{
    public MixedSample Mix(IReadOnlyList<Sample> parts, Random rng)
    {
        if (parts.Count < 2) throw new ArgumentException($"BrainFuse: needs at least 2 parts, got {parts.Count}");
        if (!(Alpha > 0) || double.IsInfinity(Alpha)) throw new ArgumentException($"BrainFuse: Alpha must be positive and finite, got {Alpha}");
        if (ClassCount < 0) throw new ArgumentException($"BrainFuse: ClassCount must not be negative, got {ClassCount}");
        int axes = Spatial.Axes(parts[0], nameof(BrainFuse));
        long[] shape = Spatial.Shape(parts[0].Image);
        bool? masks = parts[0].Target is { } t0 ? Spatial.IsMask(t0) : null;
        foreach (var part in parts)
        {
            Spatial.Axes(part, nameof(BrainFuse));
            if (!Spatial.Shape(part.Image).SequenceEqual(shape))
                throw new ArgumentException($"BrainFuse: {part.Meta}: image [{string.Join(", ", Spatial.Shape(part.Image))}] differs from " +
                    $"{parts[0].Meta}'s [{string.Join(", ", shape)}]");
            if ((part.Target is { } t ? Spatial.IsMask(t) : (bool?)null) != masks || (masks == false
                && !Spatial.Shape(part.Target!).SequenceEqual(Spatial.Shape(parts[0].Target!))))
                throw new ArgumentException($"BrainFuse: {part.Meta}: its target does not match {parts[0].Meta}'s (all parts " +
                    "need the same kind of target, or none)");
        }
        if (masks == true && ClassCount < 1) throw new ArgumentException("BrainFuse: mixing masks needs ClassCount");

        int k = parts.Count;
        using var scope = NewDisposeScope();
        var weights = Weights == MixWeights.Dirichlet
            ? tensor(rng.Dirichlet(Alpha, k).Select(w => (float)w).ToArray())
            : SpatialWeights(rng, k, shape[1..], axes);
        var image = Combine(stack(parts.Select(p => p.Image).ToArray()), weights);
        Tensor? target = masks switch
        {
            true => Combine(stack(parts.Select(p => OneHot(p.Target!, p.Meta)).ToArray()), weights),
            false => Combine(stack(parts.Select(p => p.Target!).ToArray()), weights),
            null => null,
        };
        Tensor? labels = null;
        if (ClassCount > 0)
        {
            var partWeights = Weights == MixWeights.Dirichlet ? weights : weights.flatten(1).mean([1]);   // [K]
            labels = (stack(parts.Select(p => LabelVector(p.Meta)).ToArray()) * partWeights.unsqueeze(1)).sum(dim: 0);
        }
        var first = parts[0].Meta;
        var meta = first with { Source = string.Join(" + ", parts.Select(p => p.Meta.Source)), Labels = [] };
        var mixed = new MixedSample(new Sample(image, meta, target), weights, labels);
        Spatial.Keep(scope, mixed.Sample);
        scope.MoveToOuter(weights);
        if (labels is not null) scope.MoveToOuter(labels);
        return mixed;
    }

    /// <summary>
    /// Mixes per-part tensors [K, C, …] by weights [K] or [K, …spatial] into [C, …]: the image and targets here, and
    /// a model's predictions on the parts for the consistency target.
    /// </summary>
    public static Tensor Combine(Tensor perPart, Tensor weights)
    {
        if (weights.dim() != 1 && weights.dim() != perPart.dim() - 1)
            throw new ArgumentException($"BrainFuse.Combine: weights [{string.Join(", ", Spatial.Shape(weights))}] fit neither [K] nor [K, …spatial] of " +
                $"[{string.Join(", ", Spatial.Shape(perPart))}]");
        using var scope = NewDisposeScope();
        var shape = weights.dim() == 1
            ? new long[] { weights.size(0) }.Concat(Enumerable.Repeat(1L, (int)perPart.dim() - 1)).ToArray()
            : new long[] { weights.size(0), 1 }.Concat(Spatial.Shape(weights)[1..]).ToArray();
        return scope.MoveToOuter((perPart * weights.to(perPart.dtype).view(shape)).sum(dim: 0));
    }

    Tensor SpatialWeights(Random rng, int parts, long[] spatial, int axes)
    {
        long[] grid = Spatial.PerAxis(ControlGrid ?? [4], axes, nameof(BrainFuse), nameof(ControlGrid));
        if (grid.Any(g => g < 2 || g > 64)) throw new ArgumentException($"BrainFuse: ControlGrid [{string.Join(", ", grid)}] needs 2 to 64 points per axis");
        long points = grid.Aggregate(1L, (p, g) => p * g);
        var values = new float[parts * points];
        for (long p = 0; p < points; p++)
        {
            var w = rng.Dirichlet(Alpha, parts);
            for (int i = 0; i < parts; i++) values[i * points + p] = (float)w[i];
        }
        var control = tensor(values).view(new long[] { 1, parts }.Concat(grid).ToArray());
        var mode = axes == 2 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear;
        var maps = nn.functional.interpolate(control, spatial, mode: mode, align_corners: true).squeeze(0);
        return maps / maps.sum(dim: 0, keepdim: true);   // float rounding only: interpolated convex weights already sum to 1
    }

    Tensor OneHot(Tensor mask, SampleMeta meta)
    {
        var labels = mask.squeeze(0).to(ScalarType.Int64);
        var (min, max) = labels.aminmax();
        if (min.item<long>() < 0 || max.item<long>() >= ClassCount)
            throw new ArgumentException($"BrainFuse: {meta}: the mask holds classes {min.item<long>()}..{max.item<long>()}, outside 0..{ClassCount - 1}");
        int spatialDims = (int)labels.dim();
        var permutation = new long[] { spatialDims }.Concat(Enumerable.Range(0, spatialDims).Select(i => (long)i)).ToArray();
        return nn.functional.one_hot(labels, ClassCount).permute(permutation).to(ScalarType.Float32);
    }

    Tensor LabelVector(SampleMeta meta)
    {
        var vector = new float[ClassCount];
        if (MultiLabel)
        {
            if (meta.Labels.Length != ClassCount || meta.Labels.Any(l => l is not (0 or 1)))
                throw new ArgumentException($"BrainFuse: {meta}: multi-label labels need {ClassCount} entries of 0 or 1, " +
                    $"got [{string.Join(", ", meta.Labels)}]");
            for (int c = 0; c < ClassCount; c++) vector[c] = meta.Labels[c];
        }
        else
        {
            if (meta.Labels.Length != 1 || meta.Labels[0] < 0 || meta.Labels[0] >= ClassCount)
                throw new ArgumentException($"BrainFuse: {meta}: needs one class label in 0..{ClassCount - 1}, got [{string.Join(", ", meta.Labels)}]");
            vector[meta.Labels[0]] = 1;
        }
        return tensor(vector);
    }
}
