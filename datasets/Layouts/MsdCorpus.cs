using System.Text.Json;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Datasets.Layouts;

/// <summary>
/// A Medical Segmentation Decathlon task folder (Task09_Spleen/: dataset.json, imagesTr/, labelsTr/, imagesTs/).
/// A sample is the image [C,D,H,W] (a 4D NIfTI's last axis, e.g. BrainTumour's FLAIR/T1w/t1gd/T2w, becomes C) with
/// its label map [1,D,H,W] (int64) as the target for the training split; the test split has no labels. Organ and
/// modality come from the task's name and dataset.json's "modality", unless given.
/// </summary>
public sealed class MsdCorpus : ICorpus
{
    readonly (string Image, string? Label)[] entries;
    readonly Func<string, MedicalVolume> read;

    public MsdCorpus(string folder, string split = "training", string? organ = null, string? modality = null, Func<string, MedicalVolume>? reader = null)
    {
        Folder = folder;
        read = reader ?? MedicalFile.Read;
        string path = Path.Combine(folder, "dataset.json");
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file; an MSD task folder holds dataset.json, imagesTr/ and labelsTr/", path);
        JsonElement root;
        try
        {
            root = JsonDocument.Parse(File.ReadAllText(path)).RootElement;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
        if (root.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: expected a JSON object");
        TaskName = root.TryGetProperty("name", out var name) && name.ValueKind == JsonValueKind.String ? name.GetString()! :
            Path.GetFileName(Path.GetFullPath(folder));
        Labels = ReadIndexedNames(root, "labels", path);
        Modalities = ReadIndexedNames(root, "modality", path);
        entries = split switch
        {
            "training" => ReadTraining(root, path),
            "test" => ReadTest(root, path),
            _ => throw new ArgumentException($"split '{split}': an MSD task has 'training' and 'test'"),
        };
        Split = split;
        Organ = organ ?? OrganOf(TaskName + " " + Path.GetFileName(Path.GetFullPath(folder)));
        Modality = modality ?? ModalityOf(Modalities);
    }

    public string Folder { get; }
    public string TaskName { get; }
    public string Split { get; }
    public string Organ { get; }
    public string Modality { get; }

    /// <summary>Label names by value ("0": background, "1": spleen, …).</summary>
    public IReadOnlyList<string> Labels { get; }

    /// <summary>Channel names by index ("CT", or "FLAIR", "T1w", …).</summary>
    public IReadOnlyList<string> Modalities { get; }

    public string Name => $"msd-{TaskName.ToLowerInvariant()}-{Split}";

    public long Count => entries.Length;

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"corpus '{Name}' has {Count} samples");
        var (imagePath, labelPath) = entries[index];
        using var scope = NewDisposeScope();
        using var image = read(imagePath);
        var voxels = image.Voxels.to(ScalarType.Float32);
        if (voxels.dim() == 3) voxels = voxels.unsqueeze(0);
        if (voxels.dim() != 4)
            throw new InvalidDataException($"{imagePath}: expected a 3D volume or a 4D one with channels, not [{string.Join(",", voxels.shape)}]");
        Tensor? target = null;
        if (labelPath is not null)
        {
            using var label = read(labelPath);
            target = label.Voxels.to(ScalarType.Int64);
            if (target.dim() == 3) target = target.unsqueeze(0);
            if (!target.shape[1..].SequenceEqual(voxels.shape[1..]))
                throw new InvalidDataException($"{labelPath}: label grid [{string.Join(",", target.shape[1..])}] differs from its image's " +
                    $"[{string.Join(",", voxels.shape[1..])}] ({imagePath})");
        }
        var meta = new SampleMeta(Name, imagePath, index, Organ, Modality, Dimensionality.Volume, image.Spacing[^3..], []);
        scope.MoveToOuter(voxels);
        if (target is not null) scope.MoveToOuter(target);
        return new Sample(voxels, meta, target);
    }

    (string, string?)[] ReadTraining(JsonElement root, string path)
    {
        if (!root.TryGetProperty("training", out var list) || list.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: 'training' must be a list of {{\"image\": …, \"label\": …}}");
        return [.. list.EnumerateArray().Select((item, i) =>
        {
            if (item.ValueKind != JsonValueKind.Object || !item.TryGetProperty("image", out var image) || image.ValueKind != JsonValueKind.String
                || !item.TryGetProperty("label", out var label) || label.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: training[{i}] must be {{\"image\": \"./imagesTr/….nii.gz\", \"label\": \"./labelsTr/….nii.gz\"}}");
            return (Resolve(image.GetString()!), (string?)Resolve(label.GetString()!));
        })];
    }

    (string, string?)[] ReadTest(JsonElement root, string path)
    {
        if (!root.TryGetProperty("test", out var list) || list.ValueKind != JsonValueKind.Array)
            throw new InvalidDataException($"{path}: 'test' must be a list of image paths");
        return [.. list.EnumerateArray().Select((item, i) => item.ValueKind == JsonValueKind.String
            ? (Resolve(item.GetString()!), (string?)null)
            : throw new InvalidDataException($"{path}: test[{i}] must be a path string"))];
    }

    // MSD's paths start with "./"; some copies store the files uncompressed under the same names without ".gz".
    string Resolve(string relative)
    {
        string full = Path.GetFullPath(Path.Combine(Folder, relative));
        if (!File.Exists(full) && full.EndsWith(".gz", StringComparison.Ordinal) && File.Exists(full[..^3])) return full[..^3];
        return full;
    }

    static string[] ReadIndexedNames(JsonElement root, string key, string path)
    {
        if (!root.TryGetProperty(key, out var map)) return [];
        if (map.ValueKind != JsonValueKind.Object) throw new InvalidDataException($"{path}: '{key}' must map \"0\", \"1\", … to names");
        var names = new SortedDictionary<int, string>();
        foreach (var property in map.EnumerateObject())
        {
            if (!int.TryParse(property.Name, out int i) || i < 0 || property.Value.ValueKind != JsonValueKind.String)
                throw new InvalidDataException($"{path}: '{key}' entry \"{property.Name}\" must be a non-negative integer key with a name");
            names[i] = property.Value.GetString()!;
        }
        return [.. names.Values];
    }

    static readonly (string Word, string Organ)[] Organs =
    [
        ("brain", "brain"), ("hippocampus", "brain"), ("heart", "heart"), ("atrium", "heart"), ("lung", "lung"),
        ("liver", "abdomen"), ("hepatic", "abdomen"), ("pancreas", "abdomen"), ("spleen", "abdomen"), ("kidney", "kidney"),
        ("colon", "colon"), ("prostate", "other"),
    ];

    static string OrganOf(string name)
    {
        string lower = name.ToLowerInvariant();
        foreach (var (word, organ) in Organs)
            if (lower.Contains(word)) return organ;
        return "other";
    }

    static string ModalityOf(IReadOnlyList<string> channels)
    {
        if (channels.Count == 0) return "other";
        string first = channels[0].ToUpperInvariant();
        return first switch
        {
            "CT" => "ct",
            "PET" => "pet",
            "MRI" or "FLAIR" or "T1" or "T1W" or "T1GD" or "T2" or "T2W" or "ADC" or "DWI" or "MR" => "mri",
            _ when first.StartsWith("T1", StringComparison.Ordinal) || first.StartsWith("T2", StringComparison.Ordinal) => "mri",
            _ => "other",
        };
    }
}
