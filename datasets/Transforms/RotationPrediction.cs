using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// The rotation pretext task (RotNet; Gidaris et al., 2018): one of <see cref="ClassCount"/> rotations drawn uniformly,
/// its class the label. 2D: label k = k quarter turns in (H, W), 4 classes. 3D: label 0 is no rotation and label
/// 1 + 3·plane + (k − 1) is k ∈ {1,2,3} quarter turns in plane (D,H), (D,W) or (H,W) (0, 1, 2): 10 classes, with
/// no two labels for the same rotation. <paramref name="SpatialAxes"/> fixes the plane (then 4 classes in 3D too).
/// </summary>
public sealed record RotationPrediction(int[]? SpatialAxes = null) : ILabelledTransform<int>
{
    public int ClassCount(int spatialAxes) => SpatialAxes is null && spatialAxes == 3 ? 10 : 4;

    public (Sample Sample, int Label) Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RotationPrediction));
        int label = rng.Next(ClassCount(axes));
        var (k, plane) = Rotation(label, axes);
        using var scope = NewDisposeScope();
        return (Spatial.Keep(scope, new Rotate90(k, plane).Apply(sample, rng)), label);
    }

    /// <summary>The quarter turns and plane of a label.</summary>
    public (int K, int[] Plane) Rotation(int label, int spatialAxes)
    {
        if (label < 0 || label >= ClassCount(spatialAxes)) throw new ArgumentException($"RotationPrediction: label {label} is outside 0..{ClassCount(spatialAxes) - 1}");
        if (SpatialAxes is not null || spatialAxes == 2) return (label, SpatialAxes ?? [0, 1]);
        if (label == 0) return (0, [1, 2]);
        return ((label - 1) % 3 + 1, RandRotate90.Planes(3)[(label - 1) / 3]);
    }
}
