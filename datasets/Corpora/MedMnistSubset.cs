using Medformer.Runtime.Net;
using Medformer.Runtime;

namespace Medformer.Datasets.Corpora;

/// <summary>One published file of a subset: its image size, where MedMNIST publishes it, and its MD5.</summary>
/// <param name="Bytes">The file's length when known (the published registry does not give it).</param>
public sealed record MedMnistFile(int Size, string Url, string Md5, long? Bytes = null)
{
    /// <summary>What <see cref="Download.FetchAsync"/> verifies the file against.</summary>
    public Checksum Checksum => Checksum.Md5(Md5);
}

/// <summary>
/// What a MedMNIST subset (or a corpus in its layout, as the phantom) holds: the facts MedMNIST's info.py publishes,
/// and the organ and modality in <see cref="Vocabulary"/>'s words.
/// </summary>
/// <param name="Name">e.g. "pathmnist"; the files are NAME.npz (size 28) and NAME_SIZE.npz.</param>
/// <param name="Dimensionality">Images ([N,H,W] or [N,H,W,3]) or volumes ([N,D,H,W]).</param>
/// <param name="Content">What the images show, in a few words.</param>
/// <param name="Task">One of <see cref="Vocabulary.Tasks"/>.</param>
/// <param name="Labels">Class names by index; for a multi-label task, one per label column.</param>
/// <param name="Splits">Samples per split ("train", "val", "test").</param>
/// <param name="Files">The published files by image size (28, 64, 128, 224 for 2D; 28, 64 for 3D).</param>
public sealed record MedMnistSubset(
    string Name,
    Dimensionality Dimensionality,
    string Organ,
    string Modality,
    string Content,
    int Channels,
    string Task,
    IReadOnlyList<string> Labels,
    IReadOnlyDictionary<string, long> Splits,
    string License,
    IReadOnlyDictionary<int, MedMnistFile> Files)
{
    /// <summary>
    /// For a corpus whose samples differ in organ and modality (the phantom): the words that the npz members
    /// SPLIT_organ and SPLIT_modality index. Empty for MedMNIST, where <see cref="Organ"/> and <see cref="Modality"/>
    /// hold for every sample.
    /// </summary>
    public IReadOnlyList<string> Organs { get; init; } = [];

    public IReadOnlyList<string> Modalities { get; init; } = [];

    public IReadOnlyList<int> Sizes => [.. Files.Keys.Order()];

    /// <summary>MedMNIST's own file name for a size: NAME.npz for 28, NAME_SIZE.npz otherwise.</summary>
    public string FileName(int size) => size == 28 ? $"{Name}.npz" : $"{Name}_{size}.npz";

    /// <summary>Where to fetch a size from: the published URL, or with a mirror (a folder URL holding MedMNIST's
    /// file names, as <c>MEDFORMER_MEDMNIST_URL</c> gives it) MIRROR/NAME[_SIZE].npz.</summary>
    public Uri DownloadUrl(int size, string? mirror = null)
    {
        string address = string.IsNullOrEmpty(mirror) ? File(size).Url : mirror.TrimEnd('/') + "/" + FileName(size);
        return Uri.TryCreate(address, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
            ? url
            : throw new ArgumentException($"'{address}' is not an http(s) URL");
    }

    /// <summary>The published file of that size; an <see cref="ArgumentException"/> lists the sizes there are.</summary>
    public MedMnistFile File(int size) => Files.TryGetValue(size, out var file)
        ? file
        : throw new ArgumentException($"{Name} has no size {size}: its sizes are {string.Join(", ", Sizes)}");
}
