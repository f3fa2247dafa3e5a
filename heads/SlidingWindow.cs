using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>How overlapping windows are blended: equally, or weighted by a Gaussian centred on each window.</summary>
public enum BlendMode
{
    Constant,
    Gaussian,
}

/// <summary>
/// Sliding-window settings, MONAI's names and defaults: <see cref="Overlap"/> 0.25 of the window on each axis,
/// Gaussian blending with σ = 0.125 × the window's size (<see cref="SigmaScale"/>), <see cref="BatchSize"/>
/// windows per predictor call (sw_batch_size), and a volume smaller than the window padded (constant 0 by default)
/// on both sides, the padding cropped from the result.
/// </summary>
public sealed record SlidingWindowOptions(double Overlap = 0.25, BlendMode Mode = BlendMode.Gaussian, double SigmaScale = 0.125, int BatchSize = 1,
    PaddingModes Padding = PaddingModes.Constant, double PadValue = 0)
{
    public void Validate()
    {
        if (!(Overlap >= 0 && Overlap < 1)) throw new ArgumentException($"sliding window: overlap {Overlap} must be in [0, 1)");
        if (!(SigmaScale > 0) || double.IsInfinity(SigmaScale)) throw new ArgumentException($"sliding window: sigma scale {SigmaScale} must be positive");
        if (BatchSize < 1) throw new ArgumentException($"sliding window: batch size {BatchSize} must be at least 1");
    }
}

/// <summary>
/// Sliding-window inference with the semantics of MONAI's <c>sliding_window_inference</c>: windows of
/// <c>roiSize</c> (a non-positive extent takes the image's) start every roi·(1 − overlap) pixels along each axis (the
/// whole axis when the window covers it), the last one shifted back to end at the border; each prediction is
/// weighted by the importance map (constant 1, or a separable Gaussian peaking at 1 in the window's centre, clamped
/// below at max(its minimum, 1e-3)), summed into the output and divided by the summed weights. A predictor may
/// return another resolution than its input (super-resolution): the output grid scales by its ratio to the window
/// and the importance map is resized to it (nearest). Memory holds the output, the weight map and one batch of
/// windows, whatever the volume's size.
/// </summary>
public static class SlidingWindow
{
    /// <summary>inputs [B,C,…] → the blended predictions [B,K,…] (fp32) of <paramref name="predictor"/> on windows [n,C,…roi].</summary>
    public static Tensor Infer(Tensor inputs, long[] roiSize, Func<Tensor, Tensor> predictor, SlidingWindowOptions? options = null) =>
        Infer(inputs, roiSize, (windows, _) => predictor(windows), options);

    /// <summary>As <see cref="Infer(Tensor, long[], Func{Tensor, Tensor}, SlidingWindowOptions?)"/>, the predictor also told which sample of the batch each
    /// window comes from.</summary>
    public static Tensor Infer(Tensor inputs, long[] roiSize, Func<Tensor, long[], Tensor> predictor, SlidingWindowOptions? options = null)
    {
        options ??= new SlidingWindowOptions();
        options.Validate();
        int axes = CheckShapes(inputs, roiSize);
        var original = inputs.shape[2..];
        var roi = roiSize.Select((r, a) => r > 0 ? r : original[a]).ToArray();

        using var scope = NewDisposeScope();
        var padding = Padding(roi, original);
        if (padding.Any(p => p > 0))
            inputs = options.Padding == PaddingModes.Constant
                ? F.pad(inputs, padding, PaddingModes.Constant, options.PadValue)
                : F.pad(inputs, padding, options.Padding);
        var image = inputs.shape[2..];
        var origins = Origins(image, roi, options.Overlap);
        using var importance = ImportanceMap(roi, options.Mode, options.SigmaScale, inputs.device);

        long batch = inputs.shape[0], total = batch * origins.Count;
        var blend = new Blend(importance, image, roi, origins, batch, inputs.device);
        for (long first = 0; first < total; first += options.BatchSize)
        {
            using var step = NewDisposeScope();
            long count = Math.Min(options.BatchSize, total - first);
            var samples = new long[count];
            var predicted = predictor(Windows(inputs, origins, roi, first, samples), samples);
            if (predicted.dim() != axes + 2 || predicted.shape[0] != count)
                throw new InvalidOperationException($"sliding window: the predictor returned [{string.Join(",", predicted.shape)}] for {count} windows " +
                    $"[{string.Join(",", roi)}]; expected [{count},K,…] with {axes} spatial axes");
            blend.Add(predicted, samples, first, step);
        }
        return scope.MoveToOuter(Unpad(blend.Result(), padding, original, blend.Zoom).contiguous());
    }

    /// <summary>The number of spatial axes of <paramref name="inputs"/> (2 or 3), which the roi must match.</summary>
    static int CheckShapes(Tensor inputs, long[] roiSize)
    {
        int axes = (int)inputs.dim() - 2;
        if (axes is not (2 or 3))
            throw new ArgumentException($"sliding window: inputs must be [B,C,H,W] or [B,C,D,H,W], not [{string.Join(",", inputs.shape)}]");
        if (roiSize.Length != axes)
            throw new ArgumentException($"sliding window: roi [{string.Join(",", roiSize)}] must have {axes} extents for " +
                $"inputs [{string.Join(",", inputs.shape)}]");
        return axes;
    }

    /// <summary>Windows first … first + samples.Length − 1 of the batch (each sample's windows in turn) as one [n,C,…roi];
    /// fills <paramref name="samples"/> with the sample each comes from.</summary>
    static Tensor Windows(Tensor inputs, IReadOnlyList<long[]> origins, long[] roi, long first, long[] samples)
    {
        var windows = new Tensor[samples.Length];
        for (long i = 0; i < samples.Length; i++)
        {
            samples[i] = (first + i) / origins.Count;
            windows[i] = Window(inputs.narrow(0, samples[i], 1), origins[(int)((first + i) % origins.Count)], roi);
        }
        return cat(windows, dim: 0);
    }

    /// <summary>
    /// The running sums of one inference on the output's grid: the predictions weighted by the importance map, and
    /// the weights. The grid is set by the first prediction (its ratio to the window is the zoom); later ones must agree.
    /// </summary>
    sealed class Blend(Tensor importance, long[] image, long[] roi, IReadOnlyList<long[]> origins, long batch, Device device)
    {
        Tensor? output, weights, map;

        public double[] Zoom { get; private set; } = [];

        public void Add(Tensor predicted, long[] samples, long first, DisposeScope step)
        {
            if (output is null) Allocate(predicted, step);
            else if (!predicted.shape[2..].SequenceEqual(map!.shape) || predicted.shape[1] != output.shape[1])
                throw new InvalidOperationException($"sliding window: the predictor returned [{string.Join(",", predicted.shape)}] where earlier windows " +
                    $"gave [{output.shape[1]},{string.Join(",", map!.shape)}]");
            var weighted = predicted.to(ScalarType.Float32) * map!;
            for (long i = 0; i < samples.Length; i++)
            {
                var origin = Scale(origins[(int)((first + i) % origins.Count)], Zoom);
                Region(output![samples[i]], origin, map!.shape, leading: 1).add_(weighted[i]);
            }
        }

        /// <summary>The output and weight sums, and the importance map resized to the predictions, kept past the step's scope.</summary>
        void Allocate(Tensor predicted, DisposeScope step)
        {
            Zoom = predicted.shape[2..].Select((n, a) => (double)n / roi[a]).ToArray();
            var outputShape = image.Select((n, a) => (long)(n * Zoom[a])).ToArray();
            output = step.MoveToOuter(zeros([batch, predicted.shape[1], .. outputShape], dtype: ScalarType.Float32, device: device));
            map = step.MoveToOuter(Zoom.All(z => z == 1) ? importance.alias()
                : F.interpolate(importance.unsqueeze(0).unsqueeze(0), predicted.shape[2..], mode: InterpolationMode.Nearest).squeeze(0).squeeze(0));
            weights = step.MoveToOuter(zeros(outputShape, dtype: ScalarType.Float32, device: device));
            foreach (var origin in origins) Region(weights, Scale(origin, Zoom), map.shape).add_(map);
        }

        /// <summary>The weighted sum divided by the weights, in place.</summary>
        public Tensor Result() => output!.div_(weights!);
    }

    /// <summary>The blended output [B,K,…] without the padding, scaled to the output's grid.</summary>
    static Tensor Unpad(Tensor result, long[] padding, long[] original, double[] zoom)
    {
        int axes = original.Length;
        for (int a = 0; a < axes; a++)
        {
            long before = (long)(padding[2 * (axes - 1 - a)] * zoom[a]);
            long length = (long)(original[a] * zoom[a]);
            if (before != 0 || length != result.shape[2 + a]) result = result.narrow(2 + a, before, length);
        }
        return result;
    }

    /// <summary>
    /// The padding of each axis the window is longer than, half before and half after, as PyTorch's pad takes it
    /// (the last axis first).
    /// </summary>
    static long[] Padding(long[] roi, long[] original)
    {
        int axes = roi.Length;
        var padding = new long[2 * axes];
        for (int a = 0; a < axes; a++)
        {
            long diff = Math.Max(roi[a] - original[a], 0);
            padding[2 * (axes - 1 - a)] = diff / 2;
            padding[2 * (axes - 1 - a) + 1] = diff - diff / 2;
        }
        return padding;
    }

    /// <summary>Window origins over an image (each axis' starts, first axis slowest), as MONAI's dense_patch_slices.</summary>
    public static IReadOnlyList<long[]> Origins(long[] image, long[] roi, double overlap)
    {
        var starts = new long[image.Length][];
        for (int a = 0; a < image.Length; a++)
        {
            long interval = roi[a] == image[a] ? roi[a] : Math.Max((long)(roi[a] * (1 - overlap)), 1);
            long windows = 1;
            while ((windows - 1) * interval + roi[a] < image[a]) windows++;
            starts[a] = new long[windows];
            for (long w = 0; w < windows; w++)
            {
                long start = w * interval;
                starts[a][w] = start - Math.Max(start + roi[a] - image[a], 0);
            }
        }
        var origins = new List<long[]> { Array.Empty<long>() };
        foreach (var axis in starts)
            origins = [.. origins.SelectMany(prefix => axis.Select(s => (long[])[.. prefix, s]))];
        return origins;
    }

    /// <summary>
    /// The blending weights of one window [roi…] (fp32): ones, or exp(−x²/(2σ²)) per axis with x measured from the
    /// window's centre and σ = sigmaScale × the axis' extent, multiplied, clamped below at max(min, 1e-3).
    /// </summary>
    public static Tensor ImportanceMap(long[] roi, BlendMode mode, double sigmaScale = 0.125, Device? device = null)
    {
        if (mode == BlendMode.Constant) return ones(roi, dtype: ScalarType.Float32, device: device);
        using var scope = NewDisposeScope();
        Tensor? map = null;
        for (int a = 0; a < roi.Length; a++)
        {
            double sigma = roi[a] * sigmaScale;
            var x = Enumerable.Range(0, (int)roi[a]).Select(i => (float)Math.Exp(-Math.Pow(i - (roi[a] - 1) / 2.0, 2) / (2 * sigma * sigma))).ToArray();
            var axis = tensor(x, device: device);
            map = map is null ? axis : map.unsqueeze(-1) * axis;
        }
        float floor = Math.Max(map!.min().item<float>(), 1e-3f);
        return scope.MoveToOuter(map.clamp_min(floor));
    }

    static Tensor Window(Tensor sample, long[] origin, long[] roi)
    {
        var window = sample;
        for (int a = 0; a < origin.Length; a++) window = window.narrow(2 + a, origin[a], roi[a]);
        return window;
    }

    /// <summary>A view of <paramref name="target"/>'s region at <paramref name="origin"/> of extent <paramref name="extent"/> on its last axes.</summary>
    static Tensor Region(Tensor target, long[] origin, long[] extent, int leading = 0)
    {
        var region = target;
        for (int a = 0; a < origin.Length; a++) region = region.narrow(leading + a, origin[a], extent[a]);
        return region;
    }

    static long[] Scale(long[] origin, double[] zoom) => origin.Select((o, a) => (long)(o * zoom[a])).ToArray();
}
