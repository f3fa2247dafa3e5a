using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>The identity coordinate field: every pixel shows itself. Spatial transforms then carry it along.</summary>
public static class CoordinateGrid
{
    /// <summary>[A, …spatial] float32 with entry [a, i₀, …] = i_a (pixels, slowest axis first).</summary>
    public static Tensor Identity(long[] spatialShape)
    {
        if (spatialShape.Length is not (2 or 3) || spatialShape.Any(n => n < 1))
            throw new ArgumentException($"a coordinate grid needs 2 or 3 positive sizes, got [{string.Join(", ", spatialShape)}]");
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
        int axes = Spatial.Axes(sample, nameof(CoordinateGrid));
        return new Sample(sample.Image.alias(), sample.Meta, sample.Target?.alias(), Identity(sample.Image.shape[1..]));
    }
}
