using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// The jigsaw pretext task (Noroozi and Favaro, 2016) in 2D and 3D: the image is cut into a grid of
/// <paramref name="Grid"/> tiles per axis (Grid² or Grid³ tiles; each tile ⌊n/Grid⌋ pixels, the remainder cropped
/// from the centre), the tiles are shuffled by one permutation drawn uniformly from a fixed set of
/// <paramref name="PermutationCount"/> (<see cref="JigsawPermutations"/>), and that permutation's index is the label.
/// Output tile position i (row-major over the tile grid, slowest axis first) shows input tile
/// <c>Permutations(axes).Permutations[label][i]</c>; target and coordinates move with their tiles.
/// </summary>
public sealed record Jigsaw(int Grid = 3, int PermutationCount = 100, int PermutationSeed = 0) : ILabelledTransform<int>
{
    /// <summary>The permutation set for images with <paramref name="spatialAxes"/> spatial axes.</summary>
    public JigsawPermutations Permutations(int spatialAxes)
    {
        if (Grid < 2) throw new ArgumentException($"Jigsaw: Grid must be at least 2, got {Grid}");
        if (spatialAxes is not (2 or 3)) throw new ArgumentException($"Jigsaw: 2 or 3 spatial axes, got {spatialAxes}");
        return JigsawPermutations.Get((int)Math.Pow(Grid, spatialAxes), PermutationCount, PermutationSeed);
    }

    public (Sample Sample, int Label) Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Jigsaw));
        var set = Permutations(axes);
        long[] shape = Spatial.SpatialShape(sample);
        if (shape.Any(n => n < Grid))
            throw new ArgumentException($"Jigsaw: {sample.Meta}: the image [{string.Join(", ", shape)}] is smaller than {Grid} tiles per axis");
        int label = rng.Next(set.Permutations.Count);
        long[] tile = shape.Select(n => n / Grid).ToArray();
        using var scope = NewDisposeScope();
        var cropped = Spatial.Crop(sample, shape.Select((n, a) => n / 2 - tile[a] * Grid / 2).ToArray(), tile.Select(t => t * Grid).ToArray());
        var order = Spatial.Longs(set.Permutations[label].Select(i => (long)i).ToArray());
        return (Spatial.Keep(scope, Spatial.Map(cropped, t => Shuffle(t, tile, Grid, order))), label);
    }

    // [K, G·t₀, G·t₁, …] → [K, G, t₀, G, t₁, …] → [K, G, G, …, t₀, t₁, …] → tiles [K, Gᴬ, t…] → reorder → back.
    static Tensor Shuffle(Tensor t, long[] tile, int grid, Tensor order)
    {
        int axes = tile.Length;
        long k = t.size(0);
        var split = new long[] { k }.Concat(tile.SelectMany(s => new[] { grid, s })).ToArray();
        var gridFirst = new long[] { 0 }.Concat(Enumerable.Range(0, axes).Select(a => 1L + 2 * a)).Concat(Enumerable.Range(0, axes).Select(a => 2L + 2 * a)).ToArray();
        var tiles = t.view(split).permute(gridFirst).reshape(new long[] { k, order.size(0) }.Concat(tile).ToArray());
        var shuffled = tiles.index_select(1, order).view(new long[] { k }.Concat(Enumerable.Repeat((long)grid, axes)).Concat(tile).ToArray());
        var back = new long[1 + 2 * axes];
        for (int a = 0; a < axes; a++)
        {
            back[1 + 2 * a] = 1 + a;
            back[2 + 2 * a] = 1 + axes + a;
        }
        return shuffled.permute(back).reshape(Spatial.Shape(t));
    }
}
