using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>The identity coordinate field: every pixel shows itself. Spatial transforms then carry it along.</summary>
public static class CoordinateGrid
{
    // Two-view pipelines ask for the same few shapes thousands of times a second: keep small grids per thread and
    // hand out copies (a copy is one op; building is 3A + 1).
    const long CachedElements = 1 << 18;
    [ThreadStatic] static Dictionary<string, Tensor>? cache;

    /// <summary>[A, …spatial] float32 with entry [a, i₀, …] = i_a (pixels, slowest axis first).</summary>
    public static Tensor Identity(long[] spatialShape)
    {
        if (spatialShape.Length is not (2 or 3) || spatialShape.Any(n => n < 1))
            throw new ArgumentException($"a coordinate grid needs 2 or 3 positive sizes, got [{string.Join(", ", spatialShape)}]");
        if (spatialShape.Aggregate(1L, (p, n) => p * n) > CachedElements) return Build(spatialShape);
        cache ??= [];
        string key = string.Join("x", spatialShape);
        if (!cache.TryGetValue(key, out var grid))
        {
            if (cache.Count >= 16)
            {
                foreach (var old in cache.Values) old.Dispose();
                cache.Clear();
            }
            grid = Build(spatialShape).DetachFromDisposeScope();
            cache[key] = grid;
        }
        return grid.clone();
    }

    static Tensor Build(long[] spatialShape)
    {
        using var scope = NewDisposeScope();
        int axes = spatialShape.Length;
        var components = new Tensor[axes];
        for (int a = 0; a < axes; a++)
        {
            var shape = Enumerable.Repeat(1L, axes).ToArray();
            shape[a] = spatialShape[a];
            components[a] = arange(spatialShape[a], dtype: ScalarType.Float32).view(shape).expand(spatialShape);
        }
        return scope.MoveToOuter(stack(components));
    }

    /// <summary>The sample with identity coordinates on its grid (image and target shared, as new handles).</summary>
    public static Sample Attach(Sample sample)
    {
        Spatial.Axes(sample, nameof(CoordinateGrid));
        return new Sample(sample.Image.alias(), sample.Meta, sample.Target?.alias(), Identity(Spatial.SpatialShape(sample)));
    }
}
