using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// MAE-style random patch masking: the image is cut into patches of <paramref name="PatchSize"/> (one size for all
/// axes or one per axis; each spatial size must be a multiple), and exactly round(MaskRatio · N) of the N patches are
/// masked, drawn uniformly without replacement.
/// <para>
/// The mask is a bool tensor over the patch grid, [H/p, W/p] or [D/p, H/p, W/p], true = masked (hidden from the
/// encoder, to be reconstructed), as MAE's mask 1 = remove. <c>mask.flatten()</c> is in the model's token order:
/// the patch tokenizer's convolution output flattened row-major over the patch grid, slowest axis first, so token t
/// is hidden iff <c>mask.flatten()[t]</c>.
/// </para>
/// <para>
/// <see cref="Apply"/> returns the sample and its mask; with <paramref name="FillValue"/> set, masked patches of the
/// image are filled with it (SimMIM-style inputs), otherwise the image passes through unchanged (MAE drops the
/// tokens itself). <see cref="Draw"/> gives just the mask for a spatial shape.
/// </para>
/// </summary>
public sealed record RandPatchMask(long[] PatchSize, double MaskRatio = 0.75, double? FillValue = null) : ILabelledTransform<Tensor>
{
    public (Sample Sample, Tensor Label) Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(RandPatchMask));
        using var scope = NewDisposeScope();
        var mask = Draw(Spatial.SpatialShape(sample), rng);
        Sample result;
        if (FillValue is { } fill)
        {
            var grid = Spatial.Shape(mask);
            long[] patch = Spatial.PerAxis(PatchSize, grid.Length, nameof(RandPatchMask), nameof(PatchSize));
            // Each grid cell's flag repeated over its patch: [1, g₀, 1, g₁, 1, …] expanded to [1, g₀, p₀, g₁, p₁, …].
            var split = new long[] { 1 }.Concat(grid.SelectMany(g => new[] { g, 1L })).ToArray();
            var expanded = new long[] { 1 }.Concat(grid.SelectMany((g, a) => new[] { g, patch[a] })).ToArray();
            var pixels = mask.view(split).expand(expanded).reshape(new long[] { 1 }.Concat(Spatial.SpatialShape(sample)).ToArray());
            result = Intensity.WithImage(sample, sample.Image.masked_fill(pixels, fill));
        }
        else result = Spatial.Passthrough(sample);
        Spatial.Keep(scope, result);
        return (result, scope.MoveToOuter(mask));
    }

    /// <summary>The mask for an image of <paramref name="spatialShape"/>: bool [patch grid], exactly round(MaskRatio·N) true.</summary>
    public Tensor Draw(long[] spatialShape, Random rng)
    {
        long[] grid = Grid(spatialShape);
        long count = grid.Aggregate(1L, (p, g) => p * g);
        long masked = Masked(count);
        // A partial Fisher–Yates shuffle picks the masked patches; N is small (the patch grid), so this is cheap.
        var order = new int[count];
        for (int i = 0; i < count; i++) order[i] = i;
        var flags = new bool[count];
        for (int i = 0; i < masked; i++)
        {
            int j = i + rng.Next((int)(count - i));
            (order[i], order[j]) = (order[j], order[i]);
            flags[order[i]] = true;
        }
        return tensor(flags).view(grid);
    }

    /// <summary>How many of <paramref name="patches"/> patches are masked: round(MaskRatio · patches), halves away from zero.</summary>
    public long Masked(long patches)
    {
        if (!(MaskRatio >= 0 && MaskRatio <= 1)) throw new ArgumentException($"RandPatchMask: MaskRatio must lie in [0, 1], got {MaskRatio}");
        return (long)Math.Round(MaskRatio * patches, MidpointRounding.AwayFromZero);
    }

    /// <summary>The patch grid of an image of <paramref name="spatialShape"/>.</summary>
    public long[] Grid(long[] spatialShape)
    {
        if (spatialShape.Length is not (2 or 3)) throw new ArgumentException($"RandPatchMask: a spatial shape has 2 or 3 axes, got [{string.Join(", ", spatialShape)}]");
        long[] patch = Spatial.PerAxis(PatchSize, spatialShape.Length, nameof(RandPatchMask), nameof(PatchSize));
        if (patch.Any(p => p < 1) || spatialShape.Where((n, a) => n < patch[a] || n % patch[a] != 0).Any())
            throw new ArgumentException($"RandPatchMask: every spatial size of [{string.Join(", ", spatialShape)}] must be a positive multiple of the patch size [{string.Join(", ", patch)}]");
        long[] grid = spatialShape.Select((n, a) => n / patch[a]).ToArray();
        if (grid.Aggregate(1L, (p, g) => p * g) > int.MaxValue) throw new ArgumentException("RandPatchMask: too many patches");
        return grid;
    }
}
