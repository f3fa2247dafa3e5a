using System.Buffers;
using System.Runtime.InteropServices;
using Medformer.Datasets.Formats;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Corpora;

/// <summary>How <see cref="MedMnistCorpus"/> holds a deflated image array.</summary>
/// <param name="InMemoryLimit">A deflated member up to this many bytes is inflated into memory; a larger one (the
/// 128 and 224 sizes) is inflated once into an .npy under <paramref name="UnpackDirectory"/> and memory-mapped.</param>
/// <param name="UnpackDirectory">Default: $MEDFORMER_HOME/unpacked.</param>
public sealed record MedMnistOpenOptions(long InMemoryLimit = 1L << 30, string? UnpackDirectory = null);

/// <summary>
/// One split of a MedMNIST .npz (or of a file in its layout, as the phantom corpus): SPLIT_images, uint8, [N,H,W] or
/// [N,H,W,C] for 2D and [N,D,H,W] for 3D; SPLIT_labels, integers, [N,L] (or [N]); optionally SPLIT_masks (uint8,
/// the images' spatial shape: a segmentation target) and SPLIT_organ / SPLIT_modality (indices into the subset's
/// <see cref="MedMnistSubset.Organs"/> / <see cref="MedMnistSubset.Modalities"/>).
/// <para>
/// A sample is the image as float32 [C,H,W] or [1,D,H,W] in [0, 1] (value / 255), spacing 1 per axis (MedMNIST
/// keeps none), the label row, the organ and modality of the subset, and as source "FILE:SPLIT_images[i]". The
/// image array is memory-mapped (stored member) or held in memory once (see <see cref="MedMnistOpenOptions"/>), and
/// <see cref="Get"/> copies one row, so any number of loader threads may call it at once.
/// </para>
/// </summary>
public sealed class MedMnistCorpus : ICorpus, IDisposable
{
    public static IReadOnlyList<string> SplitNames { get; } = ["train", "val", "test"];

    static readonly float[] ByteToUnit = [.. Enumerable.Range(0, 256).Select(v => v / 255f)];

    readonly NpzMemberView images;
    readonly NpzMemberView? masks;
    readonly long[] labels;
    readonly byte[]? organs, modalities;
    readonly int labelColumns;
    readonly bool channelsLast;
    readonly long pixels;
    readonly double[] spacing;

    public string Name => Subset.Name;
    public string Path { get; }
    public string Split { get; }
    public MedMnistSubset Subset { get; }
    public long Count { get; }

    /// <summary>A sample's image shape: [C,H,W] or [1,D,H,W].</summary>
    public long[] ImageShape { get; }

    public bool HasMasks => masks != null;

    /// <summary>How the images are held: "mapped", "memory" or "unpacked" (see <see cref="NpzMemberView"/>).</summary>
    public string Backing => images.Backing;

    MedMnistCorpus(string path, string split, MedMnistSubset subset, NpzMemberView images, NpzMemberView? masks, long[] imageShape,
        bool channelsLast, long[] labels, int labelColumns, byte[]? organs, byte[]? modalities)
    {
        Path = path;
        Split = split;
        Subset = subset;
        this.images = images;
        this.masks = masks;
        ImageShape = imageShape;
        this.channelsLast = channelsLast;
        this.labels = labels;
        this.labelColumns = labelColumns;
        this.organs = organs;
        this.modalities = modalities;
        Count = images.Header.Shape[0];
        pixels = imageShape.Aggregate(1L, (a, n) => a * n);
        spacing = [.. Enumerable.Repeat(1.0, imageShape.Length - 1)];
    }

    /// <summary>
    /// Opens one split. <paramref name="subset"/> defaults to what the file name says (pathmnist_64.npz: the
    /// registry's pathmnist; phantom2d_28.npz: the phantom's).
    /// </summary>
    public static MedMnistCorpus Open(string path, string split = "train", MedMnistSubset? subset = null, MedMnistOpenOptions? options = null)
    {
        if (!SplitNames.Contains(split)) throw new ArgumentException($"split '{split}': expected one of {string.Join(", ", SplitNames)}", nameof(split));
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        subset ??= MedMnistRegistry.Default.ForFile(path)?.Subset ?? Phantom.ForFile(path)
            ?? throw new
                ArgumentException($"{path}: the file name names no MedMNIST subset " +
                    $"({string.Join(", ", MedMnistRegistry.Default.Names)}) nor the phantom; pass the subset");
        options ??= new MedMnistOpenOptions();
        string unpack = options.UnpackDirectory ?? System.IO.Path.Combine(MedformerHome.Path, "unpacked");
        var members = ZipDirectory.Read(path).Select(m => m.Name).ToHashSet();
        bool Has(string name) => members.Contains(name + ".npy");
        if (!Has($"{split}_images"))
            throw new InvalidDataException($"{path}: no array '{split}_images': not a MedMNIST .npz (it holds {string.Join(", ", members.Order())})");

        var images = NpzMemberView.Open(path, $"{split}_images", options.InMemoryLimit, unpack);
        NpzMemberView? masks = null;
        try
        {
            var (imageShape, channelsLast) = ImageLayout(images, subset);
            long count = images.Header.Shape[0];
            if (Has($"{split}_masks"))
            {
                masks = NpzMemberView.Open(path, $"{split}_masks", options.InMemoryLimit, unpack);
                long[] expected = [count, .. imageShape[1..]];
                if (!IsBytes(masks.Header) || !masks.Header.Shape.SequenceEqual(expected))
                    throw new InvalidDataException($"{masks.Source}: masks must be uint8 [{string.Join(", ", expected)}], not {masks.Header.Dtype} " +
                        $"[{string.Join(", ", masks.Header.Shape)}]");
            }
            using var npz = Npz.Open(path);
            var (labels, columns) = Has($"{split}_labels") ? Labels(npz, $"{split}_labels", count, subset) : ([], 0);
            byte[]? organs = Has($"{split}_organ") ? Indices(npz, $"{split}_organ", count, subset.Organs) : null;
            byte[]? modalities = Has($"{split}_modality") ? Indices(npz, $"{split}_modality", count, subset.Modalities) : null;
            return new MedMnistCorpus(path, split, subset, images, masks, imageShape, channelsLast, labels, columns, organs, modalities);
        }
        catch
        {
            images.Dispose();
            masks?.Dispose();
            throw;
        }
    }

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), $"{Path}:{Split}_images: index {index} is outside [0, {Count})");
        var meta = Meta(index);
        byte[] row = ArrayPool<byte>.Shared.Rent(checked((int)pixels));
        Tensor? image = null;
        try
        {
            var bytes = row.AsSpan(0, (int)pixels);
            images.CopyTo(index * pixels, bytes);
            image = empty(ImageShape, ScalarType.Float32);
            var values = MemoryMarshal.Cast<byte, float>(image.bytes);
            if (channelsLast && ImageShape[0] > 1)
            {
                int channels = (int)ImageShape[0], plane = (int)(pixels / channels);
                for (int p = 0, at = 0; p < plane; p++)
                    for (int c = 0; c < channels; c++, at++)
                        values[c * plane + p] = ByteToUnit[bytes[at]];
            }
            else
                for (int i = 0; i < bytes.Length; i++) values[i] = ByteToUnit[bytes[i]];
            Tensor? target = masks == null ? null : Mask(index, row);
            return new Sample(image, meta, target);
        }
        catch
        {
            image?.Dispose();
            throw;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(row);
        }
    }

    Tensor Mask(long index, byte[] row)
    {
        long plane = pixels / ImageShape[0];
        var bytes = row.AsSpan(0, (int)plane);
        masks!.CopyTo(index * plane, bytes);
        var target = empty([1, .. ImageShape[1..]], ScalarType.Int64);
        var values = MemoryMarshal.Cast<byte, long>(target.bytes);
        for (int i = 0; i < bytes.Length; i++) values[i] = bytes[i];
        return target;
    }

    SampleMeta Meta(long index) => new(
        Subset.Name,
        $"{Path}:{Split}_images[{index}]",
        index,
        organs != null ? Subset.Organs[organs[index]] : Subset.Organ,
        modalities != null ? Subset.Modalities[modalities[index]] : Subset.Modality,
        Subset.Dimensionality,
        (double[])spacing.Clone(),
        labels.AsSpan((int)(index * labelColumns), labelColumns).ToArray());

    static bool IsBytes(NpyHeader header) => header.Kind == 'u' && header.ItemSize == 1 && !header.FortranOrder;

    static (long[] Shape, bool ChannelsLast) ImageLayout(NpzMemberView images, MedMnistSubset subset)
    {
        var header = images.Header;
        if (!IsBytes(header))
            throw new NotSupportedException($"{images.Source}: images of {header.Dtype}{(header.FortranOrder ? " in Fortran order" : "")} are not " +
                "supported (MedMNIST's are uint8, C order)");
        long[] shape = header.Shape;
        (long[] Shape, bool ChannelsLast)? layout = (subset.Dimensionality.Name, shape.Length) switch
        {
            ("2d", 3) => ([1, shape[1], shape[2]], false),
            ("2d", 4) when shape[3] is 1 or 3 or 4 => ([shape[3], shape[1], shape[2]], true),
            ("3d", 4) => ([1, shape[1], shape[2], shape[3]], false),
            ("3d", 5) when shape[4] == 1 => ([1, shape[1], shape[2], shape[3]], true),
            _ => null,
        };
        if (layout is not { } found)
            throw new InvalidDataException($"{images.Source}: shape [{string.Join(", ", shape)}] is not a {subset.Dimensionality} MedMNIST image array " +
                $"({(subset.Dimensionality.IsVolume ? "[N,D,H,W]" : "[N,H,W] or [N,H,W,C]")})");
        if (found.Shape[0] != subset.Channels)
            throw new InvalidDataException($"{images.Source}: images have {found.Shape[0]} channel(s) but {subset.Name} has {subset.Channels}");
        if (found.Shape.Skip(1).Any(n => n == 0)) throw new InvalidDataException($"{images.Source}: shape [{string.Join(", ", shape)}] has an empty axis");
        if (found.Shape.Aggregate(1L, (a, n) => a * n) > int.MaxValue / 8)
            throw new NotSupportedException($"{images.Source}: one image of [{string.Join(", ", found.Shape)}] is too large for this reader");
        return found;
    }

    static (long[] Values, int Columns) Labels(Npz npz, string name, long count, MedMnistSubset subset)
    {
        string source = $"{npz.Path}:{name}.npy";
        var header = npz.Header(name);
        // Small ([N, L] integers), so read whole; the check keeps a lying header from asking for more.
        if (header.Kind is not ('u' or 'i' or 'b') || header.Shape.Length is not (1 or 2) || header.Shape[0] != count)
            throw new InvalidDataException($"{source}: labels must be integers [{count}] or [{count}, L], not " +
                $"{header.Dtype} [{string.Join(", ", header.Shape)}]");
        int columns = header.Shape.Length == 1 ? 1 : checked((int)header.Shape[1]);
        bool multiLabel = subset.Task == "multi-label";
        int expected = multiLabel ? subset.Labels.Count : 1;
        if (columns != expected)
            throw new InvalidDataException($"{source}: {columns} label column(s), but {subset.Name} ({subset.Task}) has {expected}");
        using var tensor = npz.Read(name);
        using var wide = tensor.to(ScalarType.Int64).contiguous();
        long[] values = wide.data<long>().ToArray();
        long limit = multiLabel ? 2 : subset.Labels.Count;
        for (long i = 0; i < values.LongLength; i++)
            if (values[i] < 0 || values[i] >= limit)
                throw new InvalidDataException($"{source}: sample {i / columns} has label {values[i]}, outside [0, {limit}) for {subset.Name}");
        return (values, columns);
    }

    static byte[] Indices(Npz npz, string name, long count, IReadOnlyList<string> words)
    {
        string source = $"{npz.Path}:{name}.npy";
        if (words.Count == 0) throw new InvalidDataException($"{source}: the file has per-sample indices but the subset names no words for them");
        var header = npz.Header(name);
        if (header.Kind is not ('u' or 'i') || header.Shape.Length != 1 || header.Shape[0] != count)
            throw new InvalidDataException($"{source}: must be integers [{count}], not {header.Dtype} [{string.Join(", ", header.Shape)}]");
        using var tensor = npz.Read(name);
        using var wide = tensor.to(ScalarType.Int64).contiguous();
        var values = wide.data<long>().ToArray();
        var result = new byte[values.Length];
        for (int i = 0; i < values.Length; i++)
            result[i] = values[i] >= 0 && values[i] < words.Count && values[i] < 256
                ? (byte)values[i]
                : throw new InvalidDataException($"{source}: sample {i} has index {values[i]}, outside [0, {words.Count})");
        return result;
    }

    public void Dispose()
    {
        images.Dispose();
        masks?.Dispose();
    }
}
