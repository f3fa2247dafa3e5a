using Medformer.Datasets.Formats;
using static TorchSharp.torch;

namespace Medformer.Datasets.Corpora;

/// <summary>
/// A folder in MNIST's layout (MNIST, Fashion-MNIST, KMNIST): <c>train-images-idx3-ubyte</c>,
/// <c>train-labels-idx1-ubyte</c>, <c>t10k-images-idx3-ubyte</c>, <c>t10k-labels-idx1-ubyte</c>, each plain or
/// gzipped (<c>.gz</c>). Samples are [1,28,28] float32 in [0, 1] (value / 255) with one class label, as
/// torchvision's datasets give them. Debian's <c>dataset-fashion-mnist</c> package installs Fashion-MNIST at
/// <see cref="FashionMnistFolder"/>. MNIST has no validation split: "val" is refused.
/// </summary>
public static class MnistCorpus
{
    public const string FashionMnistFolder = "/usr/share/datasets/fashion-mnist";

    /// <summary>The split's images and labels, in memory (60,000 × 28 × 28 floats is 188 MB).</summary>
    public static TensorCorpus Open(string folder, string split = "train", string organ = "other", string modality = "other")
    {
        if (!Directory.Exists(folder)) throw new ArgumentException($"mnist: {folder} is not a folder");
        string prefix = split switch
        {
            "train" => "train",
            "test" => "t10k",
            _ => throw new ArgumentException($"mnist: split '{split}': MNIST-layout folders have train and test only"),
        };
        string imagesPath = Find(folder, $"{prefix}-images-idx3-ubyte");
        string labelsPath = Find(folder, $"{prefix}-labels-idx1-ubyte");
        var images = Idx.Read(imagesPath);
        var labels = Idx.Read(labelsPath);
        if (images.Shape.Length != 3) throw new InvalidDataException($"{imagesPath}: images must be [N,H,W], not [{string.Join(", ", images.Shape)}]");
        if (labels.Shape.Length != 1 || labels.Shape[0] != images.Shape[0])
            throw new InvalidDataException($"{labelsPath}: labels [{string.Join(", ", labels.Shape)}] do not match the " +
                $"{images.Shape[0]} images of {imagesPath}");
        for (int i = 0; i < labels.Values.Length; i++)
            if (labels.Values[i] is < 0 or > 255 || labels.Values[i] != MathF.Floor(labels.Values[i]))
                throw new InvalidDataException($"{labelsPath}: label {i} is {labels.Values[i]}, not a class index");
        for (int i = 0; i < images.Values.Length; i++) images.Values[i] /= 255f;
        using var imageTensor = tensor(images.Values, [images.Shape[0], 1, images.Shape[1], images.Shape[2]]);
        using var labelTensor = tensor(labels.Values).to(ScalarType.Int64);
        return new TensorCorpus($"{Path.GetFileName(Path.TrimEndingDirectorySeparator(folder))}/{split}", imageTensor, labelTensor, organ: organ,
            modality: modality);
    }

    static string Find(string folder, string name)
    {
        foreach (string candidate in new[] { name, name + ".gz" })
        {
            string path = Path.Combine(folder, candidate);
            if (File.Exists(path)) return path;
        }
        throw new ArgumentException($"mnist: {folder} has no {name} or {name}.gz");
    }
}
