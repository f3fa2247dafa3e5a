using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// With probability <paramref name="Probability"/>, an <see cref="Affine"/> with random parameters (MONAI's
/// <c>RandAffine</c>): each rotation angle (radians) uniform in ±<paramref name="RotateRange"/>, each scale factor
/// 1 + uniform(±<paramref name="ScaleRange"/>), each translation (pixels) uniform in ±<paramref name="TranslateRange"/>,
/// each shear coefficient uniform in ±<paramref name="ShearRange"/>. A range takes one value for every entry or one per
/// entry (planes for rotation, axes for scale and translation, off-diagonal coefficients for shear); null means none.
/// </summary>
public sealed record RandAffine(double Probability = 0.1, double[]? RotateRange = null, double[]? ScaleRange = null, double[]? TranslateRange = null,
    double[]? ShearRange = null, Interpolation Mode = Interpolation.Linear, GridSamplePaddingMode PaddingMode = GridSamplePaddingMode.Reflection) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        int axes = Spatial.Axes(sample, nameof(RandAffine));
        double[] rotate = Ranges(RotateRange, Affine.Planes(axes), nameof(RotateRange));
        double[] scale = Ranges(ScaleRange, axes, nameof(ScaleRange));
        double[] translate = Ranges(TranslateRange, axes, nameof(TranslateRange));
        double[] shear = Ranges(ShearRange, axes * (axes - 1), nameof(ShearRange));
        if (!rng.Chance(Probability)) return Spatial.Passthrough(sample);
        var map = Affine.Map(Spatial.SpatialShape(sample),
            rotate.Select(r => rng.Uniform(-r, r)).ToArray(),
            scale.Select(s => 1 + rng.Uniform(-s, s)).ToArray(),
            translate.Select(t => rng.Uniform(-t, t)).ToArray(),
            shear.Select(s => rng.Uniform(-s, s)).ToArray());
        using var scope = NewDisposeScope();
        return Spatial.Keep(scope, Spatial.Warp(sample, map, Mode, PaddingMode));
    }

    static double[] Ranges(double[]? values, int count, string name)
    {
        if (values is null) return new double[count];
        if ((values.Length != 1 && values.Length != count) || values.Any(v => !(v >= 0) || double.IsInfinity(v)))
            throw new ArgumentException($"RandAffine: {name} needs 1 or {count} finite non-negative values, got [{string.Join(", ", values)}]");
        return values.Length == count ? values : Enumerable.Repeat(values[0], count).ToArray();
    }
}
