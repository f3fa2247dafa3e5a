using Medformer.Datasets.Loading;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>What the dense heads (segmentation, image-to-image) share: their dimensionality and input checks.</summary>
static class DensePrediction
{
    public static string Describe(Dimensionality dimensionality) => dimensionality.IsVolume ? "3D volumes [C,D,H,W]" : "2D images [C,H,W]";

    /// <summary>The images the head reads, of its dimensionality, or a clear error naming the first sample.</summary>
    public static Tensor Images(HeadInput input, Dimensionality dimensionality, string what)
    {
        int axes = dimensionality.SpatialAxes;
        if (input.ImageShape.Length != axes + 2)
            throw new ArgumentException($"{input.Metas[0]}: the {what} head takes {Describe(dimensionality)}; this input is " +
                $"{(input.ImageShape.Length == 5 ? "3D" : "2D")} [{string.Join(",", input.ImageShape[1..])}]");
        return input.Images ?? throw new ArgumentException($"the {what} head reads the input's pixels: HeadInput.Images must be set");
    }

    /// <summary>The first view's targets of a batch, or a clear error naming its first sample.</summary>
    public static Tensor Targets(Batch batch, string what) => batch.Views[0].Targets
        ?? throw new ArgumentException($"{batch.Metas[0]}: the {what} head needs a target per sample, and the batch has none");
}
