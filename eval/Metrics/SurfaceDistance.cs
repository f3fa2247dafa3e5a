using static TorchSharp.torch;

namespace Medformer.Eval.Metrics;

/// <summary>
/// The percentile Hausdorff distance between two masks in physical units (spacing-aware), 2D or 3D, computed as
/// MONAI's compute_hausdorff_distance(percentile=95, directed=False): each mask's surface is its edge pixels
/// (mask AND NOT its binary erosion by the face-connected cross, outside the image counting as background); for
/// every edge pixel of one mask the Euclidean distance (in spacing units) to the nearest edge pixel of the other,
/// by an exact distance transform (SciPy's distance_transform_edt with sampling = spacing); the percentile (linear
/// interpolation, as NumPy's) of each direction; the larger of the two.
/// <para>
/// Empty masks, as MONAI: both empty → NaN (nothing to measure; means skip it); one empty → +∞.
/// </para>
/// </summary>
public static class SurfaceDistance
{
    /// <summary>95% Hausdorff distance between two masks (bool or 0/1 tensors, [H,W] or [D,H,W], or with a leading 1).</summary>
    public static double Hausdorff95(Tensor predicted, Tensor truth, double[] spacing) => Hausdorff(predicted, truth, spacing, 95);

    public static double Hausdorff(Tensor predicted, Tensor truth, double[] spacing, double percentile)
    {
        var (p, shape) = Mask(predicted, spacing, "predicted");
        var (g, _) = Mask(truth, spacing, "truth");
        if (!predicted.shape.SequenceEqual(truth.shape))
            throw new ArgumentException($"masks differ in shape: predicted [{string.Join(",", predicted.shape)}], truth [{string.Join(",", truth.shape)}]");
        return Hausdorff(p, g, shape, spacing, percentile);
    }

    /// <summary>The 95% Hausdorff distance per class 0 … classes−1 of two label maps (MONAI leaves out class 0, the background: skip entry 0).</summary>
    public static double[] Hausdorff95PerClass(Tensor predicted, Tensor truth, int classes, double[] spacing)
    {
        if (!predicted.shape.SequenceEqual(truth.shape))
            throw new ArgumentException($"label maps differ in shape: predicted [{string.Join(",", predicted.shape)}], " +
                $"truth [{string.Join(",", truth.shape)}]");
        var result = new double[classes];
        for (int c = 0; c < classes; c++)
        {
            using var p = predicted.eq(c);
            using var g = truth.eq(c);
            result[c] = Hausdorff95(p, g, spacing);
        }
        return result;
    }

    /// <summary>The same on flat masks in C order with their shape.</summary>
    public static double Hausdorff(bool[] predicted, bool[] truth, long[] shape, double[] spacing, double percentile)
    {
        if (percentile is < 0 or > 100) throw new ArgumentException($"percentile {percentile} must be in [0, 100]");
        bool anyP = predicted.Any(v => v), anyG = truth.Any(v => v);
        if (!anyP && !anyG) return double.NaN;
        if (!anyP || !anyG) return double.PositiveInfinity;
        var edgesP = Edges(predicted, shape);
        var edgesG = Edges(truth, shape);
        return Math.Max(Percentile(Directed(edgesP, edgesG, shape, spacing), percentile),
                        Percentile(Directed(edgesG, edgesP, shape, spacing), percentile));
    }

    /// <summary>Distances from each edge pixel of <paramref name="from"/> to the nearest edge pixel of <paramref name="to"/>.</summary>
    static double[] Directed(bool[] from, bool[] to, long[] shape, double[] spacing)
    {
        var squared = new double[to.Length];
        for (int i = 0; i < to.Length; i++) squared[i] = to[i] ? 0 : double.PositiveInfinity;
        for (int axis = 0; axis < shape.Length; axis++) TransformAxis(squared, shape, axis, spacing[axis]);
        var distances = new List<double>();
        for (int i = 0; i < from.Length; i++)
            if (from[i]) distances.Add(Math.Sqrt(squared[i]));
        return [.. distances];
    }

    /// <summary>
    /// One pass of the exact squared Euclidean distance transform (Felzenszwalb and Huttenlocher, 2012) along an
    /// axis: d(p) = min_q ((p − q)·h)² + f(q), by the lower envelope of parabolas.
    /// </summary>
    static void TransformAxis(double[] values, long[] shape, int axis, double h)
    {
        int n = (int)shape[axis];
        long stride = 1;
        for (int a = axis + 1; a < shape.Length; a++) stride *= shape[a];
        long outer = values.Length / (n * stride);
        var f = new double[n];
        var vertex = new int[n];
        var bound = new double[n + 1];
        for (long o = 0; o < outer; o++)
            for (long inner = 0; inner < stride; inner++)
            {
                long start = o * n * stride + inner;
                for (int i = 0; i < n; i++) f[i] = values[start + i * stride];
                int k = -1;
                for (int q = 0; q < n; q++)
                {
                    if (double.IsPositiveInfinity(f[q])) continue;
                    double s = double.NegativeInfinity;
                    while (k >= 0)
                    {
                        int r = vertex[k];
                        s = (f[q] + Sq(q * h) - f[r] - Sq(r * h)) / (2 * h * (q - r));
                        if (s > bound[k]) break;
                        k--;
                    }
                    k++;
                    vertex[k] = q;
                    bound[k] = k == 0 ? double.NegativeInfinity : s;
                    bound[k + 1] = double.PositiveInfinity;
                }
                if (k < 0) continue;  // no finite value on this line: it stays infinite
                int j = 0;
                for (int p = 0; p < n; p++)
                {
                    while (bound[j + 1] < p * h) j++;
                    values[start + p * stride] = Sq((p - vertex[j]) * h) + f[vertex[j]];
                }
            }
    }

    static double Sq(double x) => x * x;

    /// <summary>Edge pixels: in the mask with a face neighbour outside it (or outside the image).</summary>
    static bool[] Edges(bool[] mask, long[] shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int a = shape.Length - 1; a >= 0; a--)
        {
            strides[a] = stride;
            stride *= shape[a];
        }
        var edges = new bool[mask.Length];
        for (long i = 0; i < mask.Length; i++)
        {
            if (!mask[i]) continue;
            for (int a = 0; a < shape.Length && !edges[i]; a++)
            {
                long coordinate = i / strides[a] % shape[a];
                if (coordinate == 0 || coordinate == shape[a] - 1 || !mask[i - strides[a]] || !mask[i + strides[a]]) edges[i] = true;
            }
        }
        return edges;
    }

    /// <summary>NumPy's default percentile: linear interpolation between the closest ranks.</summary>
    internal static double Percentile(double[] values, double percentile)
    {
        if (values.Length == 0) return double.NaN;
        var sorted = values.Order().ToArray();
        double position = (sorted.Length - 1) * percentile / 100.0;
        int below = (int)Math.Floor(position);
        int above = Math.Min(below + 1, sorted.Length - 1);
        return sorted[below] + (sorted[above] - sorted[below]) * (position - below);
    }

    static (bool[] Mask, long[] Shape) Mask(Tensor mask, double[] spacing, string what)
    {
        var shape = mask.dim() > 0 && mask.shape[0] == 1 && mask.dim() == spacing.Length + 1 ? mask.shape[1..] : mask.shape;
        if (shape.Length is not (2 or 3) || shape.Length != spacing.Length)
            throw new ArgumentException($"{what} mask [{string.Join(",", mask.shape)}] must be [H,W] or [D,H,W] with one spacing " +
                $"per axis (spacing has {spacing.Length})");
        if (spacing.Any(s => !(s > 0) || double.IsInfinity(s)))
            throw new ArgumentException($"spacing [{string.Join(", ", spacing)}] must be positive and finite");
        using var b = mask.detach().ne(0).cpu().contiguous();
        return (b.data<bool>().ToArray(), shape);
    }
}
