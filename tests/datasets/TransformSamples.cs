using Medformer.Datasets;
using Medformer.Datasets.Transforms;
using Xunit;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

/// <summary>Small hand-made samples for the transform tests, and the checks they share.</summary>
static class TransformSamples
{
    public static long[] Shape(int axes) => axes == 2 ? [6, 7] : [4, 5, 6];

    public static SampleMeta Meta(int axes, double[]? spacing = null, long[]? labels = null, string source = "positions.npy") =>
        new("test", source, 0, "other", "ct", Dimensionality.OfSpatialAxes(axes), spacing ?? Enumerable.Repeat(1.0, axes).ToArray(), labels ?? []);

    /// <summary>
    /// An image whose value is its pixel's row-major index (so a value names a position), a mask of the index mod 3
    /// (int64), and optionally identity coordinates.
    /// </summary>
    public static Sample Positions(long[] spatial, bool mask = true, bool coordinates = true, double[]? spacing = null)
    {
        long count = spatial.Aggregate(1L, (p, n) => p * n);
        var image = arange(count, dtype: ScalarType.Float32).view(new long[] { 1 }.Concat(spatial).ToArray());
        var target = mask ? arange(count, dtype: ScalarType.Int64).remainder(3).view(image.shape) : null;
        var coords = coordinates ? CoordinateGrid.Identity(spatial) : null;
        return new Sample(image, Meta(spatial.Length, spacing), target, coords);
    }

    public static float[] Floats(Tensor t) => t.contiguous().to(ScalarType.Float32).data<float>().ToArray();

    public static long[] Longs(Tensor t) => t.contiguous().to(ScalarType.Int64).data<long>().ToArray();

    public static void Near(IReadOnlyList<double> expected, Tensor actual, double tolerance = 1e-5)
    {
        var values = Floats(actual);
        Assert.Equal(expected.Count, values.Length);
        for (int i = 0; i < values.Length; i++)
            Assert.True(Math.Abs(values[i] - expected[i]) <= tolerance * Math.Max(1, Math.Abs(expected[i])),
                $"element {i}: expected {expected[i]}, got {values[i]}");
    }

    /// <summary>
    /// Every output pixel's coordinate is an original pixel (integral, inside), and the original image holds the
    /// output's value there: the check that a transform carried the coordinates along the way it moved the image.
    /// </summary>
    public static void CoordinatesShowOriginal(Tensor original, Sample output)
    {
        using var scope = NewDisposeScope();
        Assert.NotNull(output.Coordinates);
        var coords = output.Coordinates!;
        long[] spatial = original.shape[1..];
        var rounded = coords.round();
        Assert.True((coords - rounded).abs().max().item<float>() < 1e-4, "coordinates are not integral");
        var index = rounded.to(ScalarType.Int64);
        var flat = zeros(index.shape[1..], dtype: ScalarType.Int64);
        long stride = 1;
        for (int a = spatial.Length - 1; a >= 0; a--)
        {
            Assert.True(index[a].min().item<long>() >= 0 && index[a].max().item<long>() < spatial[a], $"a coordinate on axis {a} lies outside the original");
            flat = flat + index[a] * stride;
            stride *= spatial[a];
        }
        for (long c = 0; c < original.shape[0]; c++)
        {
            var expected = original[c].flatten().index_select(0, flat.flatten());
            Assert.Equal(Floats(expected), Floats(output.Image[c].flatten()));
        }
    }

    /// <summary>The value an affine position-encoding image (value = row-major index) has at a real point.</summary>
    public static Tensor PositionValue(Tensor coordinates, long[] spatial)
    {
        var value = zeros(coordinates.shape[1..], dtype: ScalarType.Float32);
        long stride = 1;
        for (int a = spatial.Length - 1; a >= 0; a--)
        {
            value = value + coordinates[a] * stride;
            stride *= spatial[a];
        }
        return value;
    }
}
