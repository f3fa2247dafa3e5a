using Medformer.Datasets;
using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>Images read for prediction: [N,C,H,W] or [N,C,D,H,W] float32, with a meta per image naming its file.</summary>
public sealed record PredictionBatch(string File, Tensor Images, IReadOnlyList<SampleMeta> Metas) : IDisposable
{
    public void Dispose() => Images.Dispose();
}

/// <summary>
/// Reads the inputs of <c>medformer predict</c> into what a fine-tuned model saw in training: an .npz (MedMNIST's
/// layout: the member SPLIT_images, else "images" or its only array; uint8 scaled by 1/255 as the corpus does,
/// floats as stored), or a NIfTI, DICOM (file or series folder) or .npy file (min–max scaled to [0, 1] per file).
/// Each image is resized (bilinear or trilinear) to the model's training input shape when it is known. A 3D volume
/// for a 2D model, or a 2D image for a 3D model, is refused naming the file.
/// </summary>
public static class PredictionInputs
{
    /// <param name="inputShape">A training sample's shape [C,H,W] or [C,D,H,W]; null to take the images as they are (2D unless the file is a volume).</param>
    public static PredictionBatch Read(string path, long[]? inputShape, string split = "test")
    {
        int axes = inputShape is null ? 0 : inputShape.Length - 1;
        bool npz = path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase);
        using var scope = NewDisposeScope();
        Tensor images;  // [N,C,…] float32
        if (npz)
        {
            using var archive = Npz.Open(path);
            string member = archive.Contains($"{split}_images") ? $"{split}_images"
                : archive.Contains("images") ? "images"
                : archive.Names.Count == 1 ? archive.Names[0]
                : throw new InvalidDataException($"{path}: no '{split}_images' or 'images' array (it holds {string.Join(", ", archive.Names)})");
            var array = archive.Read(member);
            var values = array.dtype == ScalarType.Byte ? array.to(ScalarType.Float32) / 255 : array.to(ScalarType.Float32);
            images = FromArray(values, axes, $"{path}:{member}");
        }
        else
        {
            using var volume = MedicalFile.Read(path);
            var voxels = volume.Voxels.to(ScalarType.Float32);
            var (low, high) = (voxels.min(), voxels.max());
            voxels = (voxels - low) / (high - low).clamp_min(1e-12);
            images = FromVolume(voxels, axes, path);
        }
        if (inputShape is not null && !images.shape[2..].SequenceEqual(inputShape[1..]))
            images = F.interpolate(images, size: inputShape[1..], mode: axes == 2 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear,
                align_corners: false);
        var dims = Dimensionality.OfBatchRank(images.dim());
        var metas = Enumerable.Range(0, (int)images.shape[0])
            .Select(i => new SampleMeta("predict", npz ? $"{path}[{i}]" : path, i, "other", "other", dims, [], [])).ToList();
        return new PredictionBatch(path, scope.MoveToOuter(images.contiguous()), metas);
    }

    /// <summary>An npz array: [N,H,W] or [N,H,W,C] (channels last, C ≤ 4) for 2D, [N,D,H,W] for 3D.</summary>
    static Tensor FromArray(Tensor array, int axes, string source)
    {
        string shape = $"[{string.Join(", ", array.shape)}]";
        if (axes == 3)
            return array.dim() == 4 ? array.unsqueeze(1) :
                throw new InvalidDataException($"{source}: {shape} is not [N,D,H,W]; the model was fine-tuned on 3D volumes");
        return array.dim() switch
        {
            3 => array.unsqueeze(1),
            4 when array.shape[3] <= 4 => array.permute(0, 3, 1, 2),
            _ => throw new InvalidDataException($"{source}: {shape} is not [N,H,W] or [N,H,W,C]; the model was fine-tuned on 2D images"),
        };
    }

    /// <summary>A medical file's voxels ([H,W], [D,H,W], or a leading axis of 1) as one image [1,1,…].</summary>
    static Tensor FromVolume(Tensor voxels, int axes, string source)
    {
        while (voxels.dim() > 2 && voxels.shape[0] == 1) voxels = voxels.squeeze(0);
        string shape = $"[{string.Join(", ", voxels.shape)}]";
        if (voxels.dim() > 3) throw new InvalidDataException($"{source}: {shape} has {voxels.dim()} axes; predict takes a 2D image or a 3D volume");
        if (axes == 2 && voxels.dim() == 3)
            throw new InvalidDataException($"{source}: a 3D volume {shape}; the model was fine-tuned on 2D images");
        if (axes == 3 && voxels.dim() == 2)
            throw new InvalidDataException($"{source}: a 2D image {shape}; the model was fine-tuned on 3D volumes");
        return voxels.unsqueeze(0).unsqueeze(0);
    }
}
