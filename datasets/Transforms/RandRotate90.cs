namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, rotates by k quarter turns, k uniform in 1..<paramref name="MaxK"/>
/// (MONAI's <c>RandRotate90</c>), in the plane <paramref name="SpatialAxes"/>, or, when null, in a plane of two spatial
/// axes drawn uniformly (the one plane in 2D; (D,H), (D,W) or (H,W) in 3D).
/// </summary>
public sealed record RandRotate90(double Probability = 0.1, int MaxK = 3, int[]? SpatialAxes = null) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandRotate90));
        if (MaxK < 1) throw new ArgumentException($"RandRotate90: MaxK must be at least 1, got {MaxK}");
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        int k = rng.Next(MaxK) + 1;
        int[] plane = SpatialAxes ?? Planes(axes)[rng.Next(Planes(axes).Length)];
        return new Rotate90(k, plane).Apply(sample, rng);
    }

    /// <summary>The planes of two spatial axes, in a fixed order: (0,1) in 2D; (0,1), (0,2), (1,2) in 3D.</summary>
    public static int[][] Planes(int axes) => axes == 2 ? [[0, 1]] : [[0, 1], [0, 2], [1, 2]];
}
