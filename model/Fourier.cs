using TorchSharp;
using static TorchSharp.torch;

namespace Medformer;

/// <summary>
/// Perceiver's Fourier position features: for coordinates x in [-1, 1] on each axis, [x, sin(πfx), cos(πfx)] with
/// frequencies f spaced linearly from 1 to the grid's Nyquist frequency (size / 2) on that axis.
/// </summary>
public static class Fourier
{
    /// <summary>Feature width for <paramref name="axes"/> spatial axes and <paramref name="bands"/> bands.</summary>
    public static int Width(int axes, int bands) => axes * (2 * bands + 1);

    /// <summary>Features of the cell centres of a grid of <paramref name="grid"/> cells: [prod(grid), Width].</summary>
    public static Tensor GridFeatures(long[] grid, int bands, Device? device = null)
    {
        using var scope = NewDisposeScope();
        // Cell centres in [-1, 1]: the same physical point has the same coordinate at every resolution.
        var axes = grid.Select(n => linspace(-1.0 + 1.0 / n, 1.0 - 1.0 / n, n, dtype: ScalarType.Float32, device: device)).ToArray();
        var mesh = meshgrid(axes, indexing: "ij");
        var positions = stack(mesh.Select(m => m.flatten()).ToArray(), dim: -1);  // [P, axes]
        var nyquist = tensor(grid.Select(n => Math.Max(n / 2.0, 1.0)).ToArray(), dtype: ScalarType.Float32, device: device);
        return scope.MoveToOuter(Features(positions, nyquist, bands));
    }

    /// <summary>
    /// Features of cells <paramref name="start"/> to start + count of the grid in row-major order (slowest axis first):
    /// rows [start, start + count) of <see cref="GridFeatures(long[], int, Device?)"/>, bit for bit, without building the
    /// whole grid, so a dense output of any size can be decoded a chunk at a time.
    /// </summary>
    public static Tensor GridFeatures(long[] grid, int bands, long start, long count, Device? device = null)
    {
        long cells = grid.Aggregate(1L, (a, n) => a * n);
        if (start < 0 || count <= 0 || start + count > cells)
            throw new ArgumentException($"cells [{start}, {start + count}) are outside the grid [{string.Join(", ", grid)}] of {cells} cells");
        using var scope = NewDisposeScope();
        var flat = arange(start, start + count, dtype: ScalarType.Int64, device: device);
        var columns = new Tensor[grid.Length];
        long stride = cells;
        for (int a = 0; a < grid.Length; a++)
        {
            stride /= grid[a];
            // The same linspace values the whole grid's meshgrid holds, picked by each cell's index on this axis.
            var axis = linspace(-1.0 + 1.0 / grid[a], 1.0 - 1.0 / grid[a], grid[a], dtype: ScalarType.Float32, device: device);
            columns[a] = axis.index_select(0, flat.div(stride, rounding_mode: RoundingMode.floor).remainder(grid[a]));
        }
        var nyquist = tensor(grid.Select(n => Math.Max(n / 2.0, 1.0)).ToArray(), dtype: ScalarType.Float32, device: device);
        return scope.MoveToOuter(Features(stack(columns, dim: -1), nyquist, bands));
    }

    /// <summary>[P, axes] positions in [-1, 1], [axes] max frequencies → [P, axes·(2·bands + 1)].</summary>
    public static Tensor Features(Tensor positions, Tensor maxFrequency, int bands)
    {
        using var scope = NewDisposeScope();
        // Constants as tensors, not C# scalars: TorchSharp 0.107's scalar ops pass a Scalar's handle without keeping the
        // Scalar alive, so a finalizer can free it mid-call ("toFloat: Expected false to be true", seen once in CI-like
        // runs here). This runs in every forward, so it takes no chances.
        var one = ones(1, dtype: ScalarType.Float32, device: positions.device);
        var pi = tensor(new[] { (float)Math.PI }, device: positions.device);
        var steps = linspace(0.0, 1.0, bands, dtype: ScalarType.Float32, device: positions.device);  // [bands]
        var frequencies = one + steps.unsqueeze(0) * (maxFrequency.unsqueeze(1) - one);              // [axes, bands]
        var angles = (pi * positions.unsqueeze(-1) * frequencies).flatten(1);                         // [P, axes·bands]
        return scope.MoveToOuter(cat([positions, angles.sin(), angles.cos()], dim: -1));
    }
}
