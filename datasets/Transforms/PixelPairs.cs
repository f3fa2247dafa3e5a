using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>How <see cref="PixelPairs.Positive"/> measures the distance threshold.</summary>
public enum PairDistance
{
    /// <summary>In pixels of the original image (the views' common input).</summary>
    OriginalPixels,

    /// <summary>
    /// In feature cells, as PixPro: the distance divided by the larger of the two views' cell diagonals (a cell's
    /// extent in original pixels), so 0.7 (PixPro's default) means "closer than 0.7 of a cell".
    /// </summary>
    FeatureCells,
}

/// <summary>
/// Positive pixel pairs between two views (PixPro): feature-grid cells whose original-image points lie within a
/// distance threshold of each other.
/// </summary>
public static class PixelPairs
{
    /// <summary>
    /// A view's Coordinates [A, …] pooled to a feature grid [A, …featureShape] (the mean over each cell, i.e. the cell
    /// centre's original point for an affine view; adaptive average pooling, so cells need not divide evenly).
    /// </summary>
    public static Tensor ToFeatureGrid(Tensor coordinates, long[] featureShape)
    {
        if (coordinates.dim() is not (3 or 4) || coordinates.size(0) != coordinates.dim() - 1)
            throw new ArgumentException($"PixelPairs: coordinates must be [A, …] with A = 2 or 3 spatial axes, got " +
                $"[{string.Join(", ", Spatial.Shape(coordinates))}]");
        if (featureShape.Length != coordinates.dim() - 1 || featureShape.Any(n => n < 1))
            throw new ArgumentException($"PixelPairs: feature shape [{string.Join(", ", featureShape)}] needs {coordinates.dim() - 1} positive sizes");
        using var scope = NewDisposeScope();
        var pooled = nn.functional.interpolate(coordinates.unsqueeze(0), featureShape, mode: InterpolationMode.Area).squeeze(0);
        return scope.MoveToOuter(pooled);
    }

    /// <summary>
    /// The positive-pair mask [N1, N2] (bool) between two feature grids of coordinates [A, …] (N = cells, row-major,
    /// slowest axis first, the model's token order): true where the cells' original points are closer than
    /// <paramref name="threshold"/> (strictly), measured as <paramref name="distance"/> says. Symmetric:
    /// Positive(b, a) is the transpose of Positive(a, b). FeatureCells needs at least 2 cells along each axis.
    /// </summary>
    public static Tensor Positive(Tensor first, Tensor second, double threshold, PairDistance distance = PairDistance.OriginalPixels)
    {
        if (first.dim() != second.dim() || first.size(0) != second.size(0) || first.dim() - 1 != first.size(0))
            throw new ArgumentException($"PixelPairs: both coordinate grids must be [A, …] with the same A, got [{string.Join(", ", Spatial.Shape(first))}] " +
                $"and [{string.Join(", ", Spatial.Shape(second))}]");
        if (!(threshold >= 0)) throw new ArgumentException($"PixelPairs: the threshold must be non-negative, got {threshold}");
        double limit = threshold;
        if (distance == PairDistance.FeatureCells) limit *= Math.Max(CellDiagonal(first), CellDiagonal(second));
        using var scope = NewDisposeScope();
        long axes = first.size(0);
        var positives = PositiveBatch(first.reshape(1, axes, -1), second.reshape(1, axes, -1), limit);
        return scope.MoveToOuter(positives[0]);
    }

    /// <summary>
    /// The batched rule, one mask per sample: positives[b,i,j] = ‖c1ᵢ − c2ⱼ‖₂ &lt; threshold (strictly) for cell centres
    /// c1 [B,A,Q1] and c2 [B,A,Q2] in original pixels, A = 2 or 3; [B,Q1,Q2] bool. PixPro's threshold is 0.7 of the
    /// larger cell diagonal of the two views, per sample: divide each sample's coordinates by it and pass 0.7.
    /// Compared squared, from differences (not the |a|² + |b|² − 2ab expansion): exact at the threshold and
    /// symmetric; fp64 for fp64 coordinates, else fp32; no gradient.
    /// </summary>
    public static Tensor PositiveBatch(Tensor first, Tensor second, double threshold)
    {
        if (first.dim() != 3 || second.dim() != 3 || first.shape[0] != second.shape[0] || first.shape[1] != second.shape[1] || first.shape[1] is not (2 or 3))
            throw new ArgumentException($"PixelPairs: cell centres [{string.Join(", ", first.shape)}] and [{string.Join(", ", second.shape)}] must be " +
                "[B,A,Q1] and [B,A,Q2] with A = 2 or 3");
        if (!(threshold >= 0) || double.IsInfinity(threshold))
            throw new ArgumentOutOfRangeException(nameof(threshold), threshold, "PixelPairs: the threshold must be non-negative and finite");
        var type = first.dtype == ScalarType.Float64 && second.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32;
        using var scope = NewDisposeScope();
        var a = first.detach().to(type);
        var b = second.detach().to(type);
        // One axis at a time keeps the peak at two [B,Q1,Q2] tensors.
        var squared = zeros([a.shape[0], a.shape[2], b.shape[2]], dtype: type, device: a.device);
        for (int axis = 0; axis < a.shape[1]; axis++)
            squared.add_((a[.., axis].unsqueeze(2) - b[.., axis].unsqueeze(1)).square());
        return scope.MoveToOuter(squared.lt(threshold * threshold));
    }

    /// <summary>A feature grid's cell diagonal in original pixels: the mean step between neighbouring cells along each axis, combined.</summary>
    public static double CellDiagonal(Tensor grid)
    {
        using var scope = NewDisposeScope();
        int axes = (int)grid.size(0);
        double sum = 0;
        for (int d = 0; d < axes; d++)
        {
            long n = grid.size(1 + d);
            if (n < 2) throw new
                ArgumentException($"PixelPairs: a feature grid needs at least 2 cells along each axis to measure its cells, got " +
                    $"[{string.Join(", ", Spatial.Shape(grid)[1..])}]");
            var step = grid.narrow(1 + d, 1, n - 1) - grid.narrow(1 + d, 0, n - 1);     // [A, …]
            double length = step.to(ScalarType.Float64).square().sum(dim: 0).sqrt().mean().item<double>();
            sum += length * length;
        }
        return Math.Sqrt(sum);
    }
}
