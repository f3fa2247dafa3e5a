using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// A fixed affine resampling about the image centre (MONAI's <c>Affine</c>) by <c>affine_grid</c> + <c>grid_sample</c>
/// (align_corners=False), same spatial size. The map goes from output to input pixels, as in MONAI:
/// q = c + R·Sh·S·(p − c) + t, with c the centre ((n−1)/2 per axis).
/// <list type="bullet">
/// <item><paramref name="Rotate"/>: radians per plane of two spatial axes, turning the first axis towards the second:
/// 1 in 2D, 3 in 3D for the planes (D,H), (D,W), (H,W), composed in that order.</item>
/// <item><paramref name="Scale"/>: per axis (default 1); &gt; 1 samples a larger region, so the content shrinks.</item>
/// <item><paramref name="Translate"/>: per axis, in pixels of the input.</item>
/// <item><paramref name="Shear"/>: the off-diagonal coefficients of Sh, row-major (2 in 2D, 6 in 3D).</item>
/// </list>
/// Null means none; one value serves every entry. Masks resample nearest; under zeros padding they fill with 0. The
/// meta's spacing is left as it is (a rotated grid has no per-axis spacing).
/// </summary>
public sealed record Affine(double[]? Rotate = null, double[]? Scale = null, double[]? Translate = null, double[]? Shear = null,
    Interpolation Mode = Interpolation.Linear, GridSamplePaddingMode PaddingMode = GridSamplePaddingMode.Reflection) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(Affine));
        var map = Map(Spatial.SpatialShape(sample),
            Values(Rotate, Planes(axes), 0, nameof(Rotate)),
            Values(Scale, axes, 1, nameof(Scale)),
            Values(Translate, axes, 0, nameof(Translate)),
            Values(Shear, axes * (axes - 1), 0, nameof(Shear)));
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Warp(sample, map, Mode, PaddingMode));
    }

    internal static int Planes(int axes) => axes == 2 ? 1 : 3;

    static double[] Values(double[]? values, int count, double none, string name)
    {
        if (values is null) return Enumerable.Repeat(none, count).ToArray();
        if ((values.Length != 1 && values.Length != count) || values.Any(v => !double.IsFinite(v)))
            throw new ArgumentException($"Affine: {name} needs 1 or {count} finite values, got [{string.Join(", ", values)}]");
        return values.Length == count ? values : Enumerable.Repeat(values[0], count).ToArray();
    }

    /// <summary>The [A, A+1] map from output to input pixel indices.</summary>
    internal static double[,] Map(long[] shape, double[] rotate, double[] scale, double[] translate, double[] shear)
    {
        int axes = shape.Length;
        var matrix = Identity(axes);
        var planes = RandRotate90.Planes(axes);
        for (int i = 0; i < planes.Length; i++)
        {
            var r = Identity(axes);
            int a = planes[i][0], b = planes[i][1];
            double cos = Math.Cos(rotate[i]), sin = Math.Sin(rotate[i]);
            r[a, a] = cos;
            r[a, b] = -sin;
            r[b, a] = sin;
            r[b, b] = cos;
            matrix = Multiply(matrix, r);
        }
        var shearing = Identity(axes);
        int k = 0;
        for (int a = 0; a < axes; a++)
            for (int b = 0; b < axes; b++)
                if (a != b) shearing[a, b] = shear[k++];
        matrix = Multiply(matrix, shearing);
        for (int b = 0; b < axes; b++)
            for (int a = 0; a < axes; a++) matrix[a, b] *= scale[b];
        var map = new double[axes, axes + 1];
        for (int a = 0; a < axes; a++)
        {
            double offset = (shape[a] - 1) / 2.0 + translate[a];
            for (int b = 0; b < axes; b++)
            {
                map[a, b] = matrix[a, b];
                offset -= matrix[a, b] * (shape[b] - 1) / 2.0;
            }
            map[a, axes] = offset;
        }
        return map;
    }

    static double[,] Identity(int n)
    {
        var m = new double[n, n];
        for (int i = 0; i < n; i++) m[i, i] = 1;
        return m;
    }

    static double[,] Multiply(double[,] x, double[,] y)
    {
        int n = x.GetLength(0);
        var m = new double[n, n];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++)
                for (int l = 0; l < n; l++) m[i, j] += x[i, l] * y[l, j];
        return m;
    }
}
