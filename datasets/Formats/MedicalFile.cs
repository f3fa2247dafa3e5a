using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Reads any medical file we know by its name: NIfTI (.nii, .nii.gz, .hdr/.img), DICOM (a .dcm file, or a folder
/// holding one series), NumPy (.npy, and an .npz's only array or its "images"). The one entry point for corpora and
/// for <c>medformer inspect</c>.
/// </summary>
public static class MedicalFile
{
    public static MedicalVolume Read(string path)
    {
        if (Directory.Exists(path)) return Dicom.ReadSeries(path);
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        string name = Path.GetFileName(path).ToLowerInvariant();
        if (name.EndsWith(".npy", StringComparison.Ordinal)) return ReadNpy(path);
        if (name.EndsWith(".npz", StringComparison.Ordinal)) return ReadNpz(path);
        if (name.EndsWith(".nii", StringComparison.Ordinal) || name.EndsWith(".nii.gz", StringComparison.Ordinal)
            || name.EndsWith(".hdr", StringComparison.Ordinal) || name.EndsWith(".hdr.gz", StringComparison.Ordinal)
            || name.EndsWith(".img", StringComparison.Ordinal) || name.EndsWith(".img.gz", StringComparison.Ordinal))
            return NiftiReader.Read(path);
        if (name.EndsWith(".dcm", StringComparison.Ordinal) || name.EndsWith(".dicom", StringComparison.Ordinal) || HasDicomMagic(path))
            return Dicom.Read(path);
        throw new NotSupportedException($"{path}: unknown file type (expected .nii, .nii.gz, .hdr, .dcm, .npy, .npz or a DICOM folder)");
    }

    // DICOM files often have no extension: "DICM" after the 128-byte preamble.
    static bool HasDicomMagic(string path)
    {
        using var stream = File.OpenRead(path);
        Span<byte> head = stackalloc byte[132];
        return stream.Read(head) == 132 && head[128..].SequenceEqual("DICM"u8);
    }

    static MedicalVolume ReadNpy(string path) => FromArray(path, Npy.ReadHeader(path), Npy.Read(path), "NumPy .npy");

    static MedicalVolume ReadNpz(string path)
    {
        using var archive = Npz.Open(path);
        string member = archive.Names.Count == 1 ? archive.Names[0]
            : archive.Contains("images") ? "images"
            : throw new InvalidDataException($"{path}: no single array and no 'images' array to show (it holds {string.Join(", ", archive.Names)})");
        return FromArray(path, archive.Header(member), archive.Read(member), $"NumPy .npz, array '{member}'");
    }

    static MedicalVolume FromArray(string path, NpyHeader header, Tensor voxels, string format)
    {
        int spatial = Math.Min(3, (int)voxels.dim());
        var affine = new double[4, 4];
        for (int i = 0; i < 4; i++) affine[i, i] = 1;
        return new MedicalVolume(voxels, [.. Enumerable.Repeat(1.0, spatial)], affine, "voxel", header.Dtype, path,
        [
            new("format", format),
            new("dtype", header.Dtype),
            new("shape", $"({string.Join(", ", header.Shape)})"),
            new("fortran_order", header.FortranOrder ? "True" : "False"),
        ]);
    }
}
