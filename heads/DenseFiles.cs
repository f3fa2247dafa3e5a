using Medformer.Datasets;
using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>A medical file read as a dense head's input: the image [C,…] (float32), its meta, and its geometry for writing results beside it.</summary>
public sealed record DenseInput(Tensor Image, SampleMeta Meta, double[] Spacing, double[,] Affine) : IDisposable
{
    public void Dispose() => Image.Dispose();
}

/// <summary>
/// Files in and out of the dense heads (<c>medformer predict</c>): any medical file <see cref="MedicalFile.Read"/>
/// reads (NIfTI, DICOM, npy) as a 2D image [C,H,W] or a 3D volume [C,D,H,W], checked against the head's
/// dimensionality; masks written as NIfTI (uint8, or int16 past 255 classes) and images as NIfTI (float32) with a
/// PNG preview, on the input's geometry (a super-resolved image's voxels are the input's divided by the scale).
/// </summary>
public static class DenseFiles
{
    /// <summary>
    /// A file as a head input. A single-slice volume [1,H,W] is a 2D image; a 4D file's leading axis is channels.
    /// A file of the other dimensionality is an <see cref="ArgumentException"/> naming it.
    /// </summary>
    public static DenseInput Read(string path, Dimensionality dimensionality, string organ = "other", string modality = "other")
    {
        using var volume = MedicalFile.Read(path);
        using var scope = NewDisposeScope();
        int axes = volume.Spacing.Length;
        var voxels = volume.Voxels;
        var spacing = volume.Spacing;
        if (!dimensionality.IsVolume && axes == 3 && voxels.shape[^3] == 1)
        {
            voxels = voxels.select(-3, 0);
            spacing = spacing[1..];
            axes = 2;
        }
        int wanted = dimensionality.SpatialAxes;
        if (axes != wanted)
            throw new ArgumentException($"{path}: a {axes}D {(axes == 3 ? "volume" : "image")} [{string.Join(",", volume.Voxels.shape)}], and the head takes " +
                $"{DensePrediction.Describe(dimensionality)}");
        int leading = (int)voxels.dim() - axes;
        if (leading > 1)
            throw new ArgumentException($"{path}: [{string.Join(",", volume.Voxels.shape)}] has {leading} non-spatial axes; a " +
                "head input has at most one (channels)");
        var image = (leading == 0 ? voxels.unsqueeze(0) : voxels).to(ScalarType.Float32).contiguous();
        var meta = new SampleMeta("predict", path, 0, organ, modality, dimensionality, spacing, []);
        var affine = volume.Frame == "LPS" ? ToRas(volume.Affine) : volume.Affine;
        return new DenseInput(scope.MoveToOuter(image.alias()), meta, spacing, affine);
    }

    /// <summary>A label map [1,…] or […] as NIfTI on the input's grid.</summary>
    public static void WriteMask(string path, Tensor mask, DenseInput input)
    {
        using var scope = NewDisposeScope();
        var labels = mask.dim() == input.Image.dim() ? mask.squeeze(0) : mask;
        if (!labels.shape.SequenceEqual(input.Image.shape[1..]))
            throw new ArgumentException($"{path}: mask [{string.Join(",", mask.shape)}] is not on the input's grid " +
                $"[{string.Join(",", input.Image.shape[1..])}]");
        var type = labels.max().to(ScalarType.Float32).item<float>() > 255 ? ScalarType.Int16 : ScalarType.Byte;
        NiftiWriter.Write(path, labels.to(type).cpu(), input.Spacing, input.Affine, "medformer segmentation");
    }

    /// <summary>
    /// An image [C,…] (one channel is written as a plain 2D/3D image) as float32 NIfTI, and a PNG preview beside it
    /// (<c>name.png</c>: the first channel, middle slice). Returns the preview's path.
    /// </summary>
    public static string WriteImage(string path, Tensor image, DenseInput input, int scale = 1)
    {
        using var scope = NewDisposeScope();
        var grid = input.Image.shape[1..].Select(n => n * scale).ToArray();
        if (image.dim() != input.Image.dim() || !image.shape[1..].SequenceEqual(grid))
            throw new ArgumentException($"{path}: image [{string.Join(",", image.shape)}] is not on the input's grid × {scale} [C,{string.Join(",", grid)}]");
        var values = (image.shape[0] == 1 ? image.squeeze(0) : image).to(ScalarType.Float32).cpu();
        var spacing = input.Spacing.Select(s => s / scale).ToArray();
        NiftiWriter.Write(path, values, spacing, Scaled(input.Affine, scale), "medformer image-to-image");
        string preview = Path.ChangeExtension(path.EndsWith(".nii.gz", StringComparison.OrdinalIgnoreCase) ? path[..^3] : path, ".png");
        PngPreview.Write(preview, image.select(0, 0));
        return preview;
    }

    /// <summary>The affine of a grid `scale` times finer over the same field of view: voxel edges stay where they were.</summary>
    static double[,] Scaled(double[,] affine, int scale)
    {
        var result = (double[,])affine.Clone();
        if (scale == 1) return result;
        for (int row = 0; row < 3; row++)
        {
            double shift = 0;
            for (int column = 0; column < 3; column++)
            {
                result[row, column] = affine[row, column] / scale;
                shift += affine[row, column] * (0.5 / scale - 0.5);
            }
            result[row, 3] = affine[row, 3] + shift;
        }
        return result;
    }

    static double[,] ToRas(double[,] lps)
    {
        var ras = (double[,])lps.Clone();
        for (int column = 0; column < 4; column++)
        {
            ras[0, column] = -lps[0, column];
            ras[1, column] = -lps[1, column];
        }
        return ras;
    }
}
