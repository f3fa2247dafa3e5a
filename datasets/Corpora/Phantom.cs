using Medformer.Datasets.Formats;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Corpora;

/// <summary>What a phantom file holds: dimensionality, image size, samples per split and the seed.</summary>
public sealed record PhantomSpec(Dimensionality Dimensionality, int Size, int Train, int Val, int Test, long Seed = PhantomSpec.DefaultSeed)
{
    public const long DefaultSeed = 1_729;

    /// <summary>4,000 / 500 / 1,000 images of 28×28.</summary>
    public static PhantomSpec Default2d { get; } = new(Dimensionality.Image, 28, 4_000, 500, 1_000);

    /// <summary>1,000 / 200 / 400 volumes of 28³.</summary>
    public static PhantomSpec Default3d { get; } = new(Dimensionality.Volume, 28, 1_000, 200, 400);

    public static PhantomSpec Default(string dimensionality, int size = 28) => dimensionality switch
    {
        "2d" => Default2d with { Size = size },
        "3d" => Default3d with { Size = size },
        _ => throw new ArgumentException($"phantom dimensionality '{dimensionality}': expected 2d or 3d"),
    };

    public int Axes => Dimensionality.SpatialAxes;

    /// <summary>phantom2d_28.npz, named as MedMNIST names its files by size.</summary>
    public string FileName => $"phantom{Dimensionality}_{Size}.npz";

    public int Count(string split) => split switch
    {
        "train" => Train,
        "val" => Val,
        "test" => Test,
        _ => throw new ArgumentException($"split '{split}': expected train, val or test"),
    };

    internal void Validate()
    {
        int max = Axes == 2 ? 256 : 64;
        if (Size < 16 || Size > max) throw new ArgumentException($"phantom size {Size}: expected 16 to {max} for {Dimensionality}");
        if (Train < 0 || Val < 0 || Test < 0) throw new ArgumentException($"phantom split sizes {Train}/{Val}/{Test}: must not be negative");
    }
}

/// <summary>
/// The embedded default corpus: synthetic images and volumes in MedMNIST's .npz layout, so the main job and the tests
/// read them with the same <see cref="MedMnistCorpus"/> as real data. Several organ/modality styles (2D: abdominal
/// CT, brain MRI, chest X-ray, colon pathology, breast ultrasound; 3D: abdominal CT, brain MRI, chest PET), each
/// sample with one shape whose kind and texture make its class (10 classes) and whose pixels make its mask
/// (SPLIT_masks). SPLIT_organ and SPLIT_modality index <see cref="MedMnistSubset.Organs"/> and
/// <see cref="MedMnistSubset.Modalities"/>. Generated from a fixed seed: the same arrays every time on a machine.
/// </summary>
public static class Phantom
{
    /// <summary>Bumped whenever the generator's output changes, so stale files are rewritten.</summary>
    public const int Version = 2;

    const string SpecMember = "phantom_spec";
    static readonly Lock EnsureGate = new();

    public static IReadOnlyList<string> Shapes2d { get; } = ["ellipse", "rectangle", "ring", "cross", "triangle"];
    public static IReadOnlyList<string> Shapes3d { get; } = ["ellipsoid", "cuboid", "shell", "cross", "cone"];
    public static IReadOnlyList<string> Textures { get; } = ["smooth", "striped"];

    /// <summary>$MEDFORMER_HOME/phantom.</summary>
    public static string DefaultDirectory => Path.Combine(MedformerHome.Path, "phantom");

    /// <summary>The phantom's subset record: class names, splits, and its per-sample organ and modality words.</summary>
    public static MedMnistSubset Subset(PhantomSpec spec)
    {
        spec.Validate();
        var shapes = spec.Axes == 2 ? Shapes2d : Shapes3d;
        var styles = PhantomGenerator.StyleWords(spec.Axes);
        return new MedMnistSubset(
            $"phantom{spec.Dimensionality}", spec.Dimensionality, "other", "other",
            $"synthetic shapes in {string.Join(", ", styles.Select(s => $"{s.Organ} {s.Modality}"))} styles",
            1, "multi-class",
            [.. Enumerable.Range(0, PhantomGenerator.Classes).Select(k =>
                $"{shapes[k / PhantomGenerator.TextureKinds]}, {Textures[k % PhantomGenerator.TextureKinds]}")],
            new Dictionary<string, long> { ["train"] = spec.Train, ["val"] = spec.Val, ["test"] = spec.Test },
            "generated", new Dictionary<int, MedMnistFile>())
        {
            Organs = [.. styles.Select(s => s.Organ)],
            Modalities = [.. styles.Select(s => s.Modality)],
        };
    }

    /// <summary>The subset of a phantom file (phantom2d_28.npz) from the spec it records, or null for other names.</summary>
    public static MedMnistSubset? ForFile(string path)
    {
        var name = Path.GetFileName(path);
        if (!name.StartsWith("phantom", StringComparison.Ordinal) || !name.EndsWith(".npz", StringComparison.Ordinal)) return null;
        return ReadSpec(path) is { } spec ? Subset(spec) : null;
    }

    /// <summary>The phantom file for <paramref name="spec"/> in <paramref name="folder"/> (default
    /// <see cref="DefaultDirectory"/>), generated and written first if it is missing or stale.</summary>
    public static string Ensure(PhantomSpec spec, string? folder = null)
    {
        spec.Validate();
        folder ??= DefaultDirectory;
        Directory.CreateDirectory(folder);
        string path = Path.Combine(folder, spec.FileName);
        // Threads of one process generate it once; processes at once each write a whole file and rename it (same bytes).
        lock (EnsureGate)
        {
            if (File.Exists(path) && ReadSpec(path) == spec) return path;
            Write(path, spec);
        }
        return path;
    }

    /// <summary>One split of the phantom, generated on first use.</summary>
    public static MedMnistCorpus Open(PhantomSpec spec, string split = "train", string? folder = null) =>
        MedMnistCorpus.Open(Ensure(spec, folder), split, Subset(spec));

    /// <summary>The arrays of a phantom file, by member name; the caller disposes them.</summary>
    public static Dictionary<string, Tensor> Generate(PhantomSpec spec)
    {
        spec.Validate();
        var arrays = new Dictionary<string, Tensor>();
        try
        {
            foreach (var (split, index) in MedMnistCorpus.SplitNames.Select((s, i) => (s, i)))
            {
                using var generated = PhantomGenerator.Generate(spec.Axes, spec.Size, spec.Count(split), spec.Seed * 3 + index);
                arrays[$"{split}_images"] = generated.Images.alias();
                arrays[$"{split}_labels"] = generated.Labels.alias();
                arrays[$"{split}_masks"] = generated.Masks.alias();
                arrays[$"{split}_organ"] = generated.Styles.alias();
                arrays[$"{split}_modality"] = generated.Styles.clone();
            }
            arrays[SpecMember] = tensor(new long[] { Version, spec.Axes, spec.Size, spec.Train, spec.Val, spec.Test, spec.Seed });
            return arrays;
        }
        catch
        {
            foreach (var t in arrays.Values) t.Dispose();
            throw;
        }
    }

    /// <summary>Generates and writes a phantom file (stored, not deflated, so the corpus maps it), atomically.</summary>
    public static void Write(string path, PhantomSpec spec)
    {
        var arrays = Generate(spec);
        try
        {
            Npz.Write(path, arrays, compressed: false);
        }
        finally
        {
            foreach (var t in arrays.Values) t.Dispose();
        }
    }

    static PhantomSpec? ReadSpec(string path)
    {
        try
        {
            using var npz = Npz.Open(path);
            if (!npz.Contains(SpecMember)) return null;
            using var values = npz.Read(SpecMember);
            if (values.dtype != ScalarType.Int64 || values.shape.Length != 1 || values.shape[0] != 7) return null;
            var v = values.data<long>().ToArray();
            if (v[0] != Version || v[1] is not (2 or 3)) return null;
            return new PhantomSpec(Dimensionality.OfSpatialAxes((int)v[1]), checked((int)v[2]), checked((int)v[3]), checked((int)v[4]), checked((int)v[5]),
                v[6]);
        }
        catch (Exception e) when (e is InvalidDataException or OverflowException or KeyNotFoundException)
        {
            return null;
        }
    }
}
