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
            throw new ArgumentException($"PixelPairs: coordinates must be [A, …] with A = 2 or 3 spatial axes, got [{string.Join(", ", Spatial.Shape(coordinates))}]");
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
            throw new ArgumentException($"PixelPairs: both coordinate grids must be [A, …] with the same A, got [{string.Join(", ", Spatial.Shape(first))}] and [{string.Join(", ", Spatial.Shape(second))}]");
        if (!(threshold >= 0)) throw new ArgumentException($"PixelPairs: the threshold must be non-negative, got {threshold}");
        using var scope = NewDisposeScope();
        long axes = first.size(0);
        var a = first.reshape(axes, -1);   // [A, N1]
        var b = second.reshape(axes, -1);  // [A, N2]
        // Differences, not the |a|² + |b|² − 2ab expansion: exact for the threshold comparison, and symmetric. One
        // component at a time keeps the memory at one [N1, N2] array.
        Tensor squared = zeros(a.size(1), b.size(1));
        for (long c = 0; c < axes; c++) squared = squared + (a[c].unsqueeze(1) - b[c].unsqueeze(0)).square();
        double limit = threshold;
        if (distance == PairDistance.FeatureCells) limit *= Math.Max(CellDiagonal(first), CellDiagonal(second));
        return scope.MoveToOuter(squared < limit * limit);
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
            if (n < 2) throw new ArgumentException($"PixelPairs: a feature grid needs at least 2 cells along each axis to measure its cells, got [{string.Join(", ", Spatial.Shape(grid)[1..])}]");
            var step = grid.narrow(1 + d, 1, n - 1) - grid.narrow(1 + d, 0, n - 1);     // [A, …]
            double length = step.to(ScalarType.Float64).square().sum(dim: 0).sqrt().mean().item<double>();
            sum += length * length;
        }
        return Math.Sqrt(sum);
    }
}
