using Medformer.Datasets;
using TorchSharp;
using static TorchSharp.torch;
using Medformer.Runtime;
using Medformer.Heads.FineTuning;

namespace Medformer.Heads;

/// <summary>
/// <c>medformer predict</c> for the dense heads: each input file (NIfTI, DICOM, npy: read by <see cref="DenseFiles"/>
/// in its own units, never resized; or an .npz of images, each one written apart) predicted whole when it has the
/// training crop's shape, else by sliding windows of that crop (<see cref="FineTuner.PredictSlidingWindow"/>), and
/// written to <c>OUT/NAME_mask.nii.gz</c> (segmentation) or <c>OUT/NAME_KIND.nii.gz</c> with a PNG preview
/// (image-to-image), on the input's geometry.
/// </summary>
public static class DensePredictions
{
    /// <summary>
    /// The files written, in order; <paramref name="warn"/> hears of an input far from the intensities the model was
    /// trained on (<see cref="InputRange.Mismatch"/>).
    /// </summary>
    public static IReadOnlyList<string> Write(FineTuner tuner, IReadOnlyList<string> inputs, string outDir, string split = "test",
        SlidingWindowOptions? options = null, Action<string>? warn = null)
    {
        var (dimensionality, scale) = tuner.Head switch
        {
            SegmentationHead s => (s.Dimensionality, 1),
            ImageToImageHead i => (i.Dimensionality, i.Scale),
            _ when tuner.Head.Output != HeadOutput.Probabilities => (tuner.InputShape?.Length == 4 ? Dimensionality.Volume : Dimensionality.Image, 1),
            _ => throw new ArgumentException($"the {tuner.Head.Kind} head gives class probabilities, not masks or images"),
        };
        Directory.CreateDirectory(outDir);
        var written = new List<string>();
        foreach (string path in inputs)
        {
            string stem = Stem(path);
            if (path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase))
            {
                using var batch = PredictionInputs.Read(path, tuner.InputShape, split);
                if (tuner.InputRange?.Mismatch(path, batch.Images) is { } far) warn?.Invoke(far);
                for (int i = 0; i < batch.Metas.Count; i++)
                {
                    var meta = batch.Metas[i];
                    double[] spacing = [.. Enumerable.Repeat(1.0, (int)batch.Images.dim() - 2)];
                    using var input = new DenseInput(batch.Images[i].alias(), meta with { Spacing = spacing }, spacing, Identity());
                    written.AddRange(One(tuner, input, $"{stem}_{i}", scale, outDir, options));
                }
            }
            else
            {
                using var input = DenseFiles.Read(path, dimensionality);
                if (tuner.InputRange?.Mismatch(path, input.Image) is { } far) warn?.Invoke(far);
                written.AddRange(One(tuner, input, stem, scale, outDir, options));
            }
        }
        return written;
    }

    static IEnumerable<string> One(FineTuner tuner, DenseInput input, string stem, int scale, string outDir, SlidingWindowOptions? options)
    {
        using var scope = NewDisposeScope();
        var image = input.Image.unsqueeze(0);
        var prediction = tuner.PredictWhole(image, [input.Meta], options);
        if (tuner.Head.Output == HeadOutput.Mask)
        {
            string mask = Path.GetFullPath(Path.Combine(outDir, $"{stem}_mask.nii.gz"));
            DenseFiles.WriteMask(mask, prediction[0], input);
            return [mask];
        }
        string restored = Path.GetFullPath(Path.Combine(outDir, $"{stem}_{tuner.Head.Kind.Replace('-', '_')}.nii.gz"));
        string preview = DenseFiles.WriteImage(restored, prediction[0], input, scale);
        return [restored, Path.GetFullPath(preview)];
    }

    static string Stem(string path)
    {
        string name = Path.GetFileName(Path.TrimEndingDirectorySeparator(path));
        foreach (string extension in new[] { ".nii.gz", ".nii", ".npz", ".npy", ".dcm" })
            if (name.EndsWith(extension, StringComparison.OrdinalIgnoreCase)) return name[..^extension.Length];
        return name;
    }

    static double[,] Identity() => new double[,] { { 1, 0, 0, 0 }, { 0, 1, 0, 0 }, { 0, 0, 1, 0 }, { 0, 0, 0, 1 } };
}
