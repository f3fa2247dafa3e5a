using Medformer.Datasets.Formats;

namespace Medformer.Datasets.Corpora;

/// <summary>One array of an .npz as <c>medformer inspect</c> shows it: name, shape, NumPy dtype and streamed statistics.</summary>
public sealed record NpzArray(string Name, long[] Shape, string Dtype, string Descr, VoxelStatistics Statistics);

/// <summary>What an .npz in MedMNIST's layout holds: its subset (null where its name says none) and each split's image count.</summary>
public sealed record NpzLayout(MedMnistSubset? Subset, IReadOnlyDictionary<string, long> Splits);

/// <summary>
/// Every array of an .npz, read one at a time (each through <see cref="Npz.Read"/>, so its declared sizes are checked
/// before anything is allocated, and freed before the next), with the MedMNIST layout where the arrays are
/// SPLIT_images and SPLIT_labels.
/// </summary>
public static class NpzArrays
{
    public static IReadOnlyList<NpzArray> Read(string path)
    {
        using var archive = Npz.Open(path);
        var arrays = new List<NpzArray>();
        foreach (string name in archive.Names)
        {
            var header = archive.Header(name);
            using var values = archive.Read(name);
            arrays.Add(new NpzArray(name, header.Shape, header.NumpyName, header.Dtype, VoxelStatistics.Of(values)));
        }
        return arrays;
    }

    /// <summary>The MedMNIST layout of <paramref name="arrays"/> (null without a SPLIT_images array); the subset <paramref name="subset"/> names, else the file
    /// name's.</summary>
    public static NpzLayout? Layout(string path, IReadOnlyList<NpzArray> arrays, MedMnistSubset? subset = null)
    {
        var splits = MedMnistCorpus.SplitNames
            .Select(split => (split, images: arrays.FirstOrDefault(a => a.Name == $"{split}_images")))
            .Where(p => p.images is { Shape.Length: > 0 })
            .ToDictionary(p => p.split, p => p.images!.Shape[0]);
        if (splits.Count == 0) return null;
        return new NpzLayout(subset ?? MedMnistRegistry.Default.ForFile(path)?.Subset ?? Phantom.ForFile(path), splits);
    }
}
