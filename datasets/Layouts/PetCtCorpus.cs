using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Medformer.Runtime;

namespace Medformer.Datasets.Layouts;

/// <summary>
/// PET-CT studies for restoration (e.g. 60 s of exposure restored to 90 s). The layout: one folder per study,
/// each holding the same bed position at several exposures and its CT, as NIfTI files or DICOM series folders:
/// <code>
/// studies/patient001/pet_30s.nii.gz  pet_60s.nii.gz  pet_90s.nii.gz  ct.nii.gz      (or pet_60s/ …: DICOM series)
/// </code>
/// A sample's image is the PET at <c>inputSeconds</c> [1,D,H,W], with the CT as a second channel when
/// <c>withCt</c> (resampled onto the PET's grid when they cover the same field of view); its target is the PET at
/// <c>targetSeconds</c> [1,D,H,W] on the same grid. Studies lacking either exposure are left out and listed.
/// </summary>
public sealed class PetCtCorpus : ICorpus
{
    readonly string[] studies;
    readonly Func<string, MedicalVolume> read;

    public PetCtCorpus(string root, int inputSeconds = 60, int targetSeconds = 90, bool withCt = false, string organ = "other",
        Func<string, MedicalVolume>? reader = null)
    {
        if (!Directory.Exists(root)) throw new DirectoryNotFoundException($"{root}: no such folder of PET-CT studies");
        if (inputSeconds <= 0 || targetSeconds <= 0) throw new ArgumentException($"exposures {inputSeconds} s and {targetSeconds} s must be positive");
        Root = root;
        InputSeconds = inputSeconds;
        TargetSeconds = targetSeconds;
        WithCt = withCt;
        Organ = organ;
        read = reader ?? MedicalFile.Read;
        var usable = new List<string>();
        var missing = new List<string>();
        foreach (string study in Directory.EnumerateDirectories(root).Order(StringComparer.Ordinal))
        {
            var lacks = new List<string>();
            if (Find(study, $"pet_{inputSeconds}s") is null) lacks.Add($"pet_{inputSeconds}s");
            if (Find(study, $"pet_{targetSeconds}s") is null) lacks.Add($"pet_{targetSeconds}s");
            if (withCt && Find(study, "ct") is null) lacks.Add("ct");
            if (lacks.Count == 0) usable.Add(study);
            else missing.Add($"{study}: no {string.Join(", ", lacks)}");
        }
        studies = [.. usable];
        LeftOut = missing;
        if (studies.Length == 0)
            throw new InvalidDataException($"{root}: no study folder holds pet_{inputSeconds}s and " +
                $"pet_{targetSeconds}s{(withCt ? " and ct" : "")} (.nii, .nii.gz or a DICOM folder)");
    }

    public string Root { get; }
    public int InputSeconds { get; }
    public int TargetSeconds { get; }
    public bool WithCt { get; }
    public string Organ { get; }

    /// <summary>Study folders left out, each with what it lacks.</summary>
    public IReadOnlyList<string> LeftOut { get; }

    public string Name => $"petct-{InputSeconds}s-to-{TargetSeconds}s";

    public long Count => studies.Length;

    public Sample Get(long index)
    {
        if (index < 0 || index >= Count) throw new ArgumentOutOfRangeException(nameof(index), index, $"corpus '{Name}' has {Count} studies");
        string study = studies[index];
        using var scope = NewDisposeScope();
        string inputPath = Find(study, $"pet_{InputSeconds}s")!, targetPath = Find(study, $"pet_{TargetSeconds}s")!;
        using var input = read(inputPath);
        using var target = read(targetPath);
        var x = Volume(input);
        var y = Volume(target);
        if (!x.shape.SequenceEqual(y.shape))
            throw new InvalidDataException($"{targetPath}: grid [{string.Join(",", y.shape[1..])}] differs from {inputPath}'s " +
                $"[{string.Join(",", x.shape[1..])}]; the exposures of a study must share one bed position");
        if (WithCt)
        {
            string ctPath = Find(study, "ct")!;
            using var ct = read(ctPath);
            x = cat([x, OntoGrid(Volume(ct), ct.Spacing, x.shape[1..], input.Spacing, ctPath, inputPath)], dim: 0);
        }
        var meta = new SampleMeta(Name, inputPath, index, Organ, "pet", Dimensionality.Volume, Spatial(input.Spacing), []);
        scope.MoveToOuter(x, y);
        return new Sample(x, meta, y);
    }

    static Tensor Volume(MedicalVolume volume)
    {
        var v = volume.Voxels.to(ScalarType.Float32);
        return v.dim() switch
        {
            3 => v.unsqueeze(0),
            4 when v.shape[0] == 1 => v,
            _ => throw new InvalidDataException($"{volume.SourceFile}: expected one 3D volume, not [{string.Join(",", v.shape)}]"),
        };
    }

    static double[] Spatial(double[] spacing) => spacing.Length >= 3 ? spacing[^3..] : throw new InvalidDataException("a 3D volume needs three spacings");

    // The CT is usually finer than the PET; when both cover the same field of view (within 5%), resample it onto the PET's grid.
    static Tensor OntoGrid(Tensor ct, double[] ctSpacing, long[] grid, double[] petSpacing, string ctPath, string petPath)
    {
        if (ct.shape[1..].SequenceEqual(grid)) return ct;
        var (cs, ps) = (Spatial(ctSpacing), Spatial(petSpacing));
        for (int a = 0; a < 3; a++)
        {
            double ctExtent = ct.shape[a + 1] * cs[a], petExtent = grid[a] * ps[a];
            if (Math.Abs(ctExtent - petExtent) > 0.05 * Math.Max(ctExtent, petExtent))
                throw new InvalidDataException($"{ctPath}: covers {ctExtent:F1} mm along axis {a} where {petPath} covers {petExtent:F1} " +
                    "mm; register the CT to the PET first");
        }
        return F.interpolate(ct.unsqueeze(0), size: grid, mode: InterpolationMode.Trilinear, align_corners: false).squeeze(0);
    }

    static string? Find(string study, string stem)
    {
        foreach (string extension in new[] { ".nii.gz", ".nii", ".npy" })
            if (File.Exists(Path.Combine(study, stem + extension))) return Path.Combine(study, stem + extension);
        string folder = Path.Combine(study, stem);
        return Directory.Exists(folder) ? folder : null;
    }
}
