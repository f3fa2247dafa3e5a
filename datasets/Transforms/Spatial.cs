using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// The geometry every spatial transform shares, written once for A spatial axes. Every tensor of a sample has one
/// leading non-spatial dimension (image channels, target channels, coordinate components), so spatial axis a is
/// dimension 1 + a of each, and one op serves all three.
/// <para>
/// Coordinates are geometric: a pixel's entry is the point of the original image its centre samples, in original
/// pixels. Where a transform pads with a constant, the padded pixels get the points they lie on outside the image
/// (extrapolated linearly), so distances between views stay true; where it repeats or mirrors content (border or
/// reflection padding), the coordinates repeat or mirror with it.
/// </para>
/// </summary>
internal static class Spatial
{
    /// <summary>A tensor's sizes by one native call per dimension (<c>Tensor.shape</c> marshals through a callback, ~10× slower).</summary>
    public static long[] Shape(Tensor t)
    {
        var shape = new long[t.dim()];
        for (int i = 0; i < shape.Length; i++) shape[i] = t.size(i);
        return shape;
    }

    /// <summary>The sample's spatial extent ([H,W] or [D,H,W]).</summary>
    public static long[] SpatialShape(Sample sample) => Shape(sample.Image)[1..];

    /// <summary>A float32 tensor of <paramref name="values"/> (copied into fresh memory; cheaper than <c>torch.tensor</c>'s pinning).</summary>
    public static Tensor Floats(float[] values, params long[] shape)
    {
        var result = empty(shape.Length == 0 ? [values.Length] : shape, dtype: ScalarType.Float32);
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(result.bytes);
        return result;
    }

    /// <summary>An int64 tensor of <paramref name="values"/>.</summary>
    public static Tensor Longs(long[] values, params long[] shape)
    {
        var result = empty(shape.Length == 0 ? [values.Length] : shape, dtype: ScalarType.Int64);
        MemoryMarshal.AsBytes(values.AsSpan()).CopyTo(result.bytes);
        return result;
    }

    /// <summary>Checks the sample's layout and gives its number of spatial axes (2 or 3).</summary>
    public static int Axes(Sample sample, string transform)
    {
        long[] shape = Shape(sample.Image);
        if (shape.Length is not (3 or 4))
            throw new ArgumentException($"{transform}: {sample.Meta}: the image is [{string.Join(", ", shape)}], neither [C,H,W] nor [C,D,H,W]");
        if (shape.Skip(1).Any(n => n < 1))
            throw new ArgumentException($"{transform}: {sample.Meta}: the image [{string.Join(", ", shape)}] is empty");
        if (sample.Image.dtype != ScalarType.Float32)
            throw new ArgumentException($"{transform}: {sample.Meta}: the image is {sample.Image.dtype}, not Float32");
        int axes = shape.Length - 1;
        if (sample.Target is { } target)
        {
            long[] t = Shape(target);
            if (t.Length != shape.Length || !t.AsSpan(1).SequenceEqual(shape.AsSpan(1)))
                throw new ArgumentException($"{transform}: {sample.Meta}: the target [{string.Join(", ", t)}] is not on the " +
                    $"image's grid [{string.Join(", ", shape)}]");
        }
        if (sample.Coordinates is { } coordinates)
        {
            long[] c = Shape(coordinates);
            if (c.Length != shape.Length || c[0] != axes || !c.AsSpan(1).SequenceEqual(shape.AsSpan(1)) || coordinates.dtype != ScalarType.Float32)
                throw new ArgumentException($"{transform}: {sample.Meta}: the coordinates are {coordinates.dtype} [{string.Join(", ", c)}], not Float32 " +
                    $"[{axes}, {string.Join(", ", shape[1..])}]");
        }
        return axes;
    }

    /// <summary>A per-axis parameter: one value for every axis, or one per axis.</summary>
    public static long[] PerAxis(long[]? values, int axes, string transform, string name)
    {
        if (values is null || (values.Length != 1 && values.Length != axes))
            throw new ArgumentException($"{transform}: {name} needs 1 or {axes} values, got {(values is null ? "none" : values.Length.ToString())}");
        return values.Length == axes ? values : Enumerable.Repeat(values[0], axes).ToArray();
    }

    /// <inheritdoc cref="PerAxis(long[], int, string, string)"/>
    public static double[] PerAxis(double[]? values, int axes, string transform, string name)
    {
        if (values is null || (values.Length != 1 && values.Length != axes))
            throw new ArgumentException($"{transform}: {name} needs 1 or {axes} values, got {(values is null ? "none" : values.Length.ToString())}");
        return values.Length == axes ? values : Enumerable.Repeat(values[0], axes).ToArray();
    }

    /// <summary>Moves the sample's tensors out of <paramref name="scope"/> (to the caller's scope) and returns it.</summary>
    public static Sample Keep(DisposeScope scope, Sample sample)
    {
        scope.MoveToOuter(sample.Image);
        if (sample.Target is { } target) scope.MoveToOuter(target);
        if (sample.Coordinates is { } coordinates) scope.MoveToOuter(coordinates);
        return sample;
    }

    /// <summary>The sample unchanged, as new handles on the same memory, so the caller may dispose input and output apart.</summary>
    public static Sample Passthrough(Sample sample, SampleMeta? meta = null) =>
        new(sample.Image.alias(), meta ?? sample.Meta, sample.Target?.alias(), sample.Coordinates?.alias());

    /// <summary>One op on image, target and coordinates alike (flips, rotations, slicing, tile shuffles).</summary>
    public static Sample Map(Sample sample, Func<Tensor, Tensor> op, SampleMeta? meta = null) =>
        new(op(sample.Image), meta ?? sample.Meta, sample.Target is null ? null : op(sample.Target),
            sample.Coordinates is null ? null : op(sample.Coordinates));

    /// <summary>Integer targets are label masks: resampled by nearest neighbour, padded with 0 (background).</summary>
    public static bool IsMask(Tensor target) => !is_floating_point(target);

    public static Sample Crop(Sample sample, long[] start, long[] size) => Map(sample, t => Narrow(t, start, size));

    static Tensor Narrow(Tensor t, long[] start, long[] size)
    {
        Tensor result = t;
        for (int a = 0; a < start.Length; a++)
            if (start[a] != 0 || size[a] != t.size(1 + a)) result = result.narrow(1 + a, start[a], size[a]);
        return ReferenceEquals(result, t) ? t.alias() : result;
    }

    /// <summary>Constant padding: the image and a float target with <paramref name="value"/>, a mask with 0.</summary>
    public static Sample Pad(Sample sample, long[] before, long[] after, double value)
    {
        int axes = before.Length;
        if (before.All(p => p == 0) && after.All(p => p == 0)) return Passthrough(sample);
        var pads = new long[2 * axes];
        for (int a = 0; a < axes; a++)
        {
            // nn.functional.pad lists the last dimension first.
            pads[2 * (axes - 1 - a)] = before[a];
            pads[2 * (axes - 1 - a) + 1] = after[a];
        }
        var image = nn.functional.pad(sample.Image, pads, PaddingModes.Constant, value);
        var target = sample.Target is { } t ? nn.functional.pad(t, pads, PaddingModes.Constant, IsMask(t) ? 0 : value) : null;
        Tensor? coordinates = null;
        if (sample.Coordinates is { } c)
        {
            var positions = new double[axes][];
            for (int a = 0; a < axes; a++)
            {
                long n = c.size(1 + a) + before[a] + after[a];
                positions[a] = new double[n];
                for (long p = 0; p < n; p++) positions[a][p] = p - before[a];
            }
            coordinates = LinearSeparable(c, positions);
        }
        return new Sample(image, sample.Meta, target, coordinates);
    }

    /// <summary>
    /// Crops [start, start + length) and resizes it to <paramref name="size"/> (align_corners=False: the crop's outer
    /// edges map onto the output's), as <c>interpolate</c> does; the mask by nearest-exact.
    /// </summary>
    public static Sample CropResize(Sample sample, long[] start, long[] length, long[] size, Interpolation mode, SampleMeta meta)
    {
        if (length.SequenceEqual(size))
        {
            var cropped = Crop(sample, start, length);
            return cropped with { Meta = meta };
        }
        bool nearest = mode == Interpolation.Nearest;
        var image = Interpolate(Narrow(sample.Image, start, length), size, nearest);
        Tensor? target = null;
        if (sample.Target is { } t)
            target = IsMask(t)
                ? Interpolate(Narrow(t, start, length).to(ScalarType.Float32), size, nearest: true).to(t.dtype)
                : Interpolate(Narrow(t, start, length), size, nearest);
        Tensor? coordinates = null;
        if (sample.Coordinates is { } c)
        {
            var positions = new double[size.Length][];
            for (int a = 0; a < size.Length; a++)
            {
                positions[a] = new double[size[a]];
                double scale = (double)length[a] / size[a];
                for (long p = 0; p < size[a]; p++)
                    positions[a][p] = start[a] + (nearest ? Math.Min(Math.Floor((p + 0.5) * scale), length[a] - 1) : (p + 0.5) * scale - 0.5);
            }
            coordinates = LinearSeparable(c, positions);
        }
        return new Sample(image, meta, target, coordinates);
    }

    /// <summary>[K,…] resized to <paramref name="size"/>: bilinear/trilinear (align_corners=False) or nearest-exact.</summary>
    public static Tensor Interpolate(Tensor t, long[] size, bool nearest)
    {
        var mode = nearest ? InterpolationMode.NearestExact : size.Length == 2 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear;
        // align_corners=false for nearest-exact too: libtorch 2.10's C++ interpolate warns when it is unset, and the nearest kernels ignore it.
        return nn.functional.interpolate(t.unsqueeze(0), size, mode: mode, align_corners: false).squeeze(0);
    }

    /// <summary>
    /// A field [K,…] sampled at separable positions (per axis, in input pixels) by multilinear interpolation that
    /// extrapolates linearly beyond the edges: exact for coordinate fields, which are affine in the pixel index.
    /// </summary>
    public static Tensor LinearSeparable(Tensor field, double[][] positions)
    {
        Tensor result = field;
        for (int a = 0; a < positions.Length; a++)
        {
            long n = result.size(1 + a);
            double[] q = positions[a];
            int m = q.Length;
            var indices = new long[2 * m];                 // lower neighbours, then upper ones: one tensor for both
            var weight = new float[m];
            bool whole = true, contiguous = true;
            for (int p = 0; p < m; p++)
            {
                long low = n == 1 ? 0 : Math.Clamp((long)Math.Floor(q[p]), 0, n - 2);
                indices[p] = low;
                indices[m + p] = Math.Min(low + 1, n - 1);
                weight[p] = n == 1 ? 0f : (float)(q[p] - low);
                whole &= weight[p] == 0f;
                contiguous &= low == indices[0] + p;
            }
            if (whole && contiguous)
            {
                if (indices[0] != 0 || m != n) result = result.narrow(1 + a, indices[0], m);
                continue;
            }
            var index = Longs(indices);
            var below = result.index_select(1 + a, whole ? index.narrow(0, 0, m) : index);
            if (whole)
            {
                result = below;
                continue;
            }
            var shape = Enumerable.Repeat(1L, positions.Length + 1).ToArray();
            shape[1 + a] = m;
            result = below.narrow(1 + a, 0, m).lerp(below.narrow(1 + a, m, m), Floats(weight, shape));
        }
        return ReferenceEquals(result, field) ? field.alias() : result;
    }

    /// <summary>
    /// The per-axis step of a coordinate field [A,…]: row b is how far the original point moves for one pixel along
    /// spatial axis b (from the field's first and last slices; exact for affine fields, zero for a single slice).
    /// </summary>
    public static Tensor AxisSteps(Tensor coordinates)
    {
        int axes = (int)coordinates.size(0);
        var rows = new Tensor[axes];
        for (int b = 0; b < axes; b++)
        {
            long n = coordinates.size(1 + b);
            rows[b] = n == 1
                ? zeros(axes, dtype: ScalarType.Float32)
                : (coordinates.narrow(1 + b, n - 1, 1).flatten(1).mean([1]) - coordinates.narrow(1 + b, 0, 1).flatten(1).mean([1])) / (n - 1);
        }
        return stack(rows);
    }

    /// <summary>
    /// Resamples the sample through an affine map of pixel indices (slowest axis first), output pixel p to input point
    /// <c>q = matrix · p + offset</c> given as an [A, A+1] array, with grid_sample (align_corners=False), keeping the
    /// spatial size. Masks go nearest, with zeros padding read as background under <see cref="GridSamplePaddingMode.Zeros"/>.
    /// </summary>
    public static Sample Warp(Sample sample, double[,] map, Interpolation mode, GridSamplePaddingMode padding)
    {
        long[] spatial = Shape(sample.Image)[1..];
        int axes = spatial.Length;
        bool identity = true;
        for (int a = 0; a < axes; a++)
            for (int b = 0; b <= axes; b++) identity &= map[a, b] == (a == b ? 1 : 0);
        if (identity) return Passthrough(sample);
        // grid_sample's normalised coordinates (align_corners=False) are u = (2p + 1)/n - 1, fastest axis first. With
        // p_b = (n_b/2) u_b + (n_b - 1)/2 and g_a = (2 q_a + 1)/n_a - 1: θ[a,b] = M[a,b] n_b / n_a and
        // θ[a,A] = (2 K_a + 1)/n_a - 1, K_a = offset_a + Σ_b M[a,b] (n_b - 1)/2; rows and columns reversed for PyTorch.
        var theta = new float[axes * (axes + 1)];
        for (int i = 0; i < axes; i++)
        {
            int a = axes - 1 - i;
            double constant = map[a, axes];
            for (int j = 0; j < axes; j++)
            {
                int b = axes - 1 - j;
                theta[i * (axes + 1) + j] = (float)(map[a, b] * spatial[b] / spatial[a]);
                constant += map[a, b] * (spatial[b] - 1) / 2.0;
            }
            theta[i * (axes + 1) + axes] = (float)((2 * constant + 1) / spatial[a] - 1);
        }
        var size = new long[] { 1, 1 }.Concat(spatial).ToArray();
        var grid = nn.functional.affine_grid(Floats(theta, 1, axes, axes + 1), size, align_corners: false);
        var gridMode = mode == Interpolation.Nearest ? GridSampleMode.Nearest : GridSampleMode.Bilinear;
        Tensor Sample(Tensor t, GridSampleMode m, GridSamplePaddingMode pad) =>
            nn.functional.grid_sample(t.unsqueeze(0), grid, m, pad, align_corners: false).squeeze(0);

        var image = Sample(sample.Image, gridMode, padding);
        Tensor? target = sample.Target is { } t
            ? IsMask(t) ? Sample(t.to(ScalarType.Float32), GridSampleMode.Nearest, padding).round().to(t.dtype) : Sample(t, gridMode, padding)
            : null;
        Tensor? coordinates = null;
        if (sample.Coordinates is { } c)
        {
            if (padding != GridSamplePaddingMode.Zeros)
                coordinates = Sample(c, gridMode, padding);
            else
            {
                // Inside, the interpolated field; outside, the field carried on along each axis's step.
                var inside = Sample(c, gridMode, GridSamplePaddingMode.Border);
                var half = Floats(spatial.Reverse().Select(n => n / 2.0f).ToArray());
                var q = (grid[0] * half + half - 0.5f).flip(-1);                          // [..., A] input pixels, slowest first
                var last = Floats(spatial.Select(n => (float)(n - 1)).ToArray());
                var beyond = q - q.clamp(zeros_like(last), last);                         // [..., A]
                var steps = AxisSteps(c);                                                 // [A (axis), A (component)]
                var offset = (beyond.unsqueeze(-1) * steps).sum(-2);                      // [..., A]
                coordinates = inside + offset.permute([axes, .. Enumerable.Range(0, axes).Select(i => (long)i)]);
            }
        }
        return new Sample(image, sample.Meta, target, coordinates);
    }
}
