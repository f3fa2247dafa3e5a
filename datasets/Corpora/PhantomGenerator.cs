using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// The phantom's pixels, vectorised over a chunk of samples. A sample is a modality-like background (its style)
/// with one shape in it; the class is the shape (5 kinds) times its texture (smooth or striped), drawn at a random
/// position, size and rotation, never touching the border. Every image is then standardised to its style's mean
/// and spread, so neither a pixel's value nor the mean intensity tells the class.
/// </summary>
static class PhantomGenerator
{
    public const int ShapeKinds = 5, TextureKinds = 2, Classes = ShapeKinds * TextureKinds;

    /// <summary>One split; the geometry (centre, half sizes, in pixels, slowest axis first) is there for tests.</summary>
    internal sealed record Split(Tensor Images, Tensor Masks, Tensor Labels, Tensor Styles, Tensor Centers, Tensor HalfSizes) : IDisposable
    {
        public void Dispose()
        {
            foreach (var t in new[] { Images, Masks, Labels, Styles, Centers, HalfSizes }) t.Dispose();
        }
    }

    enum Style { Ct, Mri, Xray, Pathology, Ultrasound, Pet }

    static readonly Style[] Styles2d = [Style.Ct, Style.Mri, Style.Xray, Style.Pathology, Style.Ultrasound];
    static readonly Style[] Styles3d = [Style.Ct, Style.Mri, Style.Pet];

    public static IReadOnlyList<(string Organ, string Modality)> StyleWords(int axes) =>
        [.. (axes == 2 ? Styles2d : Styles3d).Select(s => s switch
        {
            Style.Ct => ("abdomen", "ct"),
            Style.Mri => ("brain", "mri"),
            Style.Xray => ("chest", "xray"),
            Style.Pathology => ("colon", "pathology"),
            Style.Ultrasound => ("breast", "ultrasound"),
            _ => ("chest", "pet"),
        })];

    // Each style's mean and standard deviation after standardisation: its look, independent of the class.
    static (double Mean, double Std) Level(Style style) => style switch
    {
        Style.Ct => (0.32, 0.20),
        Style.Mri => (0.30, 0.22),
        Style.Xray => (0.50, 0.20),
        Style.Pathology => (0.62, 0.18),
        Style.Ultrasound => (0.28, 0.20),
        _ => (0.22, 0.20),
    };

    public static Split Generate(int axes, int size, int count, long seed)
    {
        // One intra-op thread: the ops are small, so threads gain little and their spin-waits cost up to 10x the CPU
        // on a busy machine; and reductions then sum in one order whatever the machine's core count.
        int threads = TorchRuntime.Threads;
        TorchRuntime.SetThreads(1);
        try
        {
            return GenerateSingleThreaded(axes, size, count, seed);
        }
        finally
        {
            TorchRuntime.SetThreads(threads);
        }
    }

    static Split GenerateSingleThreaded(int axes, int size, int count, long seed)
    {
        using var scope = NewDisposeScope();
        var generator = new Generator((ulong)seed, CPU);
        var styles = axes == 2 ? Styles2d : Styles3d;
        // Every (class, style) pair equally often, then shuffled together: the style tells nothing of the class.
        var order = randperm(count, generator: generator);
        var index = arange(count, ScalarType.Int64);
        var labels = index.remainder(Classes).index_select(0, order);
        var styleIndex = index.div(Classes, rounding_mode: RoundingMode.floor).remainder(styles.Length).index_select(0, order);
        int chunk = axes == 2 ? 1024 : 48;
        var parts = new List<(Tensor Images, Tensor Masks, Tensor Centers, Tensor HalfSizes)>();
        for (int start = 0; start < count; start += chunk)
        {
            int n = Math.Min(chunk, count - start);
            // Each chunk frees its intermediates (hundreds of MB for 3D) before the next begins.
            using var chunkScope = NewDisposeScope();
            var (images, masks, centers, halfSizes) = Chunk(axes, size, labels.narrow(0, start, n), styleIndex.narrow(0, start, n), styles, generator);
            parts.Add((chunkScope.MoveToOuter(images), chunkScope.MoveToOuter(masks), chunkScope.MoveToOuter(centers), chunkScope.MoveToOuter(halfSizes)));
        }
        var split = count == 0
            ? new Split(empty([0, .. Enumerable.Repeat((long)size, axes)], ScalarType.Byte), empty([0, .. Enumerable.Repeat((long)size, axes)],
                ScalarType.Byte),
                empty([0, 1], ScalarType.Byte), empty([0], ScalarType.Byte), empty([0, axes]), empty([0, axes]))
            : new Split(cat(parts.Select(p => p.Images).ToList(), 0), cat(parts.Select(p => p.Masks).ToList(), 0),
                labels.to(ScalarType.Byte).unsqueeze(1), styleIndex.to(ScalarType.Byte),
                cat(parts.Select(p => p.Centers).ToList(), 0), cat(parts.Select(p => p.HalfSizes).ToList(), 0));
        foreach (var t in new[] { split.Images, split.Masks, split.Labels, split.Styles, split.Centers, split.HalfSizes }) scope.MoveToOuter(t);
        return split;
    }

    static (Tensor, Tensor, Tensor, Tensor) Chunk(int axes, int size, Tensor labels, Tensor styleIndex, Style[] styles, Generator generator)
    {
        long n = labels.shape[0];
        long points = (long)Math.Pow(size, axes);
        var grid = Grid(axes, size);                        // [P, A] pixel indices
        var unit = (grid - (size - 1) / 2.0) / (size / 2.0); // [P, A] in [-1, 1]
        var shape = labels.div(TextureKinds, rounding_mode: RoundingMode.floor);
        var texture = labels.remainder(TextureKinds).to(ScalarType.Float32);

        // Geometry: half sizes, rotation, then a centre that keeps the rotated bounding box inside the image.
        var (lo, hi) = axes == 2 ? (0.2, 0.34) : (0.18, 0.3);
        var half = (lo + (hi - lo) * rand([n, axes], generator: generator)) * size;
        var rotation = axes == 2 ? Rotation2d(rand(n, generator: generator) * (2 * Math.PI)) : Rotation3d(randn([n, 4], generator: generator));
        var extent = (rotation.abs() * half.unsqueeze(1)).sum(-1);                                 // [n, A]
        var fit = ((size / 2.0 - 1.5) / extent).amin([1L], keepdim: true).clamp_max(1.0);
        half = half * fit;
        extent = extent * fit;
        var center = extent + 0.5 + rand([n, axes], generator: generator) * (size - 2.0 - 2 * extent).clamp_min(0);
        var local = Checked.matmul(grid.unsqueeze(0) - center.unsqueeze(1), rotation);              // [n, P, A]: R^T (x - c)
        var mask = Shapes(local / half.unsqueeze(1), shape, axes);                                   // [n, P] bool

        // Texture: stripes across the shape, period about 3 to 4.5 pixels at size 28.
        var direction = Normalize(randn([n, axes], generator: generator));
        var period = (3.0 + 1.5 * rand(n, generator: generator)) * (size / 28.0);
        var phase = rand(n, generator: generator) * (2 * Math.PI);
        var stripes = (Checked.matmul(direction, grid.T) * (2 * Math.PI / period).unsqueeze(1) + phase.unsqueeze(1)).cos();
        var sign = (rand(n, generator: generator) < 0.5).to(ScalarType.Float32) * 2 - 1;
        // Version 2: lesions larger and twice the contrast of version 1, stripes fully modulated; in version 1 a 3-layer
        // CNN stayed at chance after 1,500 steps of 64 (the class signal drowned in each style's own texture).
        var contrast = sign * (0.35 + 0.2 * rand(n, generator: generator));
        var lesion = mask.to(ScalarType.Float32) * contrast.unsqueeze(1) * (1 + texture.unsqueeze(1) * stripes);

        // Per-sample anatomy and noise, drawn for every style so the stream of random numbers never depends on them.
        var body = 0.85 + 0.15 * rand([n, 1], generator: generator);
        var bias = Normalize(randn([n, axes], generator: generator)) * (0.15 + 0.2 * rand([n, 1], generator: generator));
        var noise1 = randn([n, points], generator: generator);
        var noise2 = randn([n, points], generator: generator);
        var noise3 = randn([n, points], generator: generator);

        // Each style renders only its own samples.
        var image = empty(n, points);
        for (int k = 0; k < styles.Length; k++)
        {
            var chosen = (styleIndex == k).nonzero().squeeze(1);
            if (chosen.shape[0] == 0) continue;
            Tensor Pick(Tensor t) => t.index_select(0, chosen);
            var look = Render(styles[k], axes, size, unit, Pick(body), Pick(bias), Pick(lesion), Pick(noise1), Pick(noise2), Pick(noise3));
            var (mean, std) = Level(styles[k]);
            look = (look - look.mean([1L], keepdim: true)) / (look.std([1L], keepdim: true) + 1e-6) * std + mean;
            // Clipping to [0, 1] would move the mean by how much of the shape is clipped, which depends on the class:
            // shift until the clipped image has the style's mean again.
            for (int step = 0; step < 8; step++) look = look + (mean - look.clamp(0, 1).mean([1L], keepdim: true));
            image.index_copy_(0, chosen, look.clamp(0, 1));
        }
        long[] spatial = [n, .. Enumerable.Repeat((long)size, axes)];
        var bytes = (image * 255).round().to(ScalarType.Byte).reshape(spatial);
        return (bytes, mask.to(ScalarType.Byte).reshape(spatial), center, half);
    }

    static Tensor Render(Style style, int axes, int size, Tensor unit, Tensor body, Tensor bias, Tensor lesion, Tensor noise1, Tensor noise2, Tensor noise3)
    {
        var x = unit.select(1, axes - 1).unsqueeze(0);
        var y = unit.select(1, axes - 2).unsqueeze(0);
        var z = axes == 3 ? unit.select(1, 0).unsqueeze(0) : null;
        return style switch
        {
            Style.Ct => Ct(x, y, body, lesion, noise1),
            Style.Mri => Mri(unit, x, y, z, body, bias, lesion, noise1, noise2),
            Style.Xray => Xray(x, y, body, lesion, noise1),
            Style.Pathology => Pathology(size, lesion, noise1, noise3),
            Style.Ultrasound => Ultrasound(x, y, lesion, noise1, noise2),
            _ => Pet(x, y, z!, size, body, lesion, noise1),
        };
    }

    // Axial slice (or a stack of them): air, soft tissue, a bright vertebra; Gaussian noise.
    static Tensor Ct(Tensor x, Tensor y, Tensor body, Tensor lesion, Tensor noise1)
    {
        var inside = Inside(Sq(x / (0.9 * body)) + Sq(y / (0.72 * body)));
        var spine = Inside(Sq(x / 0.13) + Sq((y - 0.5 * body) / 0.13)) * inside;
        var tissue = 0.03 + 0.39 * inside;
        tissue = tissue + (0.95 - tissue) * spine;
        return tissue + lesion + 0.025 * noise1;
    }

    // Head: brain and a bright scalp; a smooth multiplicative bias field; Rician noise (magnitude of complex Gaussian).
    static Tensor Mri(Tensor unit, Tensor x, Tensor y, Tensor? z, Tensor body, Tensor bias, Tensor lesion, Tensor noise1, Tensor noise2)
    {
        var q = Sq(x / (0.78 * body)) + Sq(y / (0.9 * body));
        if (z is not null) q = q + Sq(z / (0.85 * body));
        var head = 0.5 * Inside(q / 0.8) + 0.78 * Inside(q) * (1 - Inside(q / 0.8));
        var field = 1 + (unit.unsqueeze(0) * bias.unsqueeze(1)).sum(-1);
        var signal = (head + lesion) * field;
        const double sigma = 0.04;
        return (Sq(signal + sigma * noise1) + Sq(sigma * noise2)).sqrt();
    }

    // Projection: bright mediastinum and soft tissue, two dark lung fields crossed by ribs, air at the sides;
    // noise grows with the signal (quantum noise).
    static Tensor Xray(Tensor x, Tensor y, Tensor body, Tensor lesion, Tensor noise1)
    {
        var lungs = Inside(Sq((x - 0.42) / (0.3 * body)) + Sq((y + 0.05) / (0.62 * body)))
            + Inside(Sq((x + 0.42) / (0.3 * body)) + Sq((y + 0.05) / (0.62 * body)));
        var torso = (x.abs() <= 0.92 * body).to(ScalarType.Float32);
        var ribs = 0.06 * (y * (2 * Math.PI / 0.4)).cos();
        var signal = 0.1 + torso * (0.65 + lungs * (-0.47 + ribs)) + lesion;
        return signal + (0.02 + 0.03 * signal.clamp_min(0).sqrt()) * noise1;
    }

    // Stained tissue: dark nuclei from thresholded smoothed noise on a pale background.
    static Tensor Pathology(int size, Tensor lesion, Tensor noise1, Tensor noise3)
    {
        long n = noise3.shape[0];
        var field = noise3.reshape(n, 1, size, size);
        for (int i = 0; i < 2; i++) field = nn.functional.avg_pool2d(field, [3, 3], [1, 1], [1, 1], count_include_pad: false);
        field = field.reshape(n, -1);
        field = (field - field.mean([1L], keepdim: true)) / (field.std([1L], keepdim: true) + 1e-6);
        var nuclei = (field > 0.7).to(ScalarType.Float32);
        return 0.82 - 0.47 * nuclei + lesion + 0.03 * noise1;
    }

    // A sector from the probe at the top, echoes fading with depth, multiplicative speckle (Rayleigh).
    static Tensor Ultrasound(Tensor x, Tensor y, Tensor lesion, Tensor noise1, Tensor noise2)
    {
        var depth = y + 1.15;
        var radius = (Sq(x) + Sq(depth)).sqrt();
        var sector = (radius <= 2.05).logical_and(atan2(x, depth).abs() <= 0.62).to(ScalarType.Float32);
        var signal = sector * (0.5 - 0.12 * (radius - 0.15)) + lesion;
        var rayleigh = (Sq(noise1) + Sq(noise2)).sqrt();
        return signal * (1 + 0.35 * (rayleigh - 1.2533) / 0.6551);
    }

    // PET: low uptake in the body, a hot heart, blurred by the scanner's resolution; Poisson-like noise.
    static Tensor Pet(Tensor x, Tensor y, Tensor z, int size, Tensor body, Tensor lesion, Tensor noise1)
    {
        var inside = Inside(Sq(x / (0.85 * body)) + Sq(y / (0.7 * body)));
        var heart = Inside(Sq((x - 0.2) / 0.28) + Sq((y + 0.1) / 0.25) + Sq((z - 0.15) / 0.3)) * inside;
        long n = inside.shape[0];
        var uptake = (0.02 + 0.16 * inside + 0.47 * heart).reshape(n, 1, size, size, size);
        uptake = nn.functional.avg_pool3d(uptake, [3, 3, 3], [1, 1, 1], [1, 1, 1], count_include_pad: false).reshape(n, -1);
        var signal = uptake + lesion;
        return signal + 0.05 * (signal.clamp_min(0) + 0.02).sqrt() * noise1;
    }

    /// <summary>The shape masks [n, P], from the coordinates in each shape's own frame scaled by its half sizes (so
    /// each shape fits in [-1, 1]^A); each kind is computed for its own samples only.</summary>
    static Tensor Shapes(Tensor u, Tensor kind, int axes)
    {
        var mask = empty(u.shape[0], u.shape[1], dtype: ScalarType.Bool);
        for (int k = 0; k < ShapeKinds; k++)
        {
            var chosen = (kind == k).nonzero().squeeze(1);
            if (chosen.shape[0] > 0) mask.index_copy_(0, chosen, Shape(k, u.index_select(0, chosen), axes));
        }
        return mask;
    }

    static Tensor Shape(int kind, Tensor u, int axes)
    {
        var a = u.abs();
        switch (kind)
        {
            case 0: // ellipse, ellipsoid
                return Sq(u).sum(-1) <= 1;
            case 1: // rectangle, cuboid
                return a.amax([-1L]) <= 0.85;
            case 2: // ring, shell
            {
                var q = Sq(u).sum(-1);
                double inner = axes == 2 ? 0.55 : 0.6;
                return (q <= 1).logical_and(q >= inner * inner);
            }
            case 3: // cross: one bar along each axis
            {
                Tensor? bars = null;
                for (int axis = 0; axis < axes; axis++)
                {
                    var others = cat([a.narrow(-1, 0, axis), a.narrow(-1, axis + 1, axes - 1 - axis)], -1).amax([-1L]);
                    var bar = (a.select(-1, axis) <= 1).logical_and(others <= 0.35);
                    bars = bars is null ? bar : bars.logical_or(bar);
                }
                return bars!;
            }
            default: // triangle, cone: apex at -1 along the last axis, base at +1
            {
                var along = u.select(-1, axes - 1);
                var across = axes == 2 ? a.select(-1, 0) : (Sq(u.select(-1, 0)) + Sq(u.select(-1, 1))).sqrt();
                return (along <= 1).logical_and(across <= (along + 1) / 2);
            }
        }
    }

    static Tensor Grid(int axes, int size)
    {
        int points = (int)Math.Pow(size, axes);
        var values = new float[points * axes];
        for (int p = 0; p < points; p++)
            for (int axis = axes - 1, rest = p; axis >= 0; axis--, rest /= size)
                values[p * axes + axis] = rest % size;
        return tensor(values, [points, axes]);
    }

    static Tensor Rotation2d(Tensor angle)
    {
        var (c, s) = (angle.cos(), angle.sin());
        return stack([stack([c, -s], 1), stack([s, c], 1)], 1);
    }

    // A uniformly random rotation: a normalised Gaussian quaternion.
    static Tensor Rotation3d(Tensor quaternion)
    {
        var q = Normalize(quaternion);
        var (w, x, y, z) = (q.select(1, 0), q.select(1, 1), q.select(1, 2), q.select(1, 3));
        return stack(
        [
            stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], 1),
            stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], 1),
            stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], 1),
        ], 1);
    }

    static Tensor Normalize(Tensor v) => v / v.norm(1, keepdim: true).clamp_min(1e-6);

    static Tensor Sq(Tensor t) => t * t;

    static Tensor Inside(Tensor q) => (q <= 1).to(ScalarType.Float32);
}
