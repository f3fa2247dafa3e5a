namespace Medformer.Datasets.Formats;

/// <summary>
/// The file or files of one NIfTI image: a single file (.nii, .nii.gz, or any other name), or a pair whose header
/// (.hdr, .hdr.gz) and image (.img, .img.gz) share a stem; either of a pair's names finds the other.
/// </summary>
public sealed record NiftiFiles(string Header, string Data, bool Single)
{
    public static NiftiFiles Resolve(string path)
    {
        bool gz = path.EndsWith(".gz", StringComparison.OrdinalIgnoreCase);
        string bare = gz ? path[..^3] : path;
        if (bare.EndsWith(".hdr", StringComparison.OrdinalIgnoreCase))
            return new NiftiFiles(path, Partner(path, bare, gz, "img"), false);
        if (bare.EndsWith(".img", StringComparison.OrdinalIgnoreCase))
            return new NiftiFiles(Partner(path, bare, gz, "hdr"), path, false);
        return new NiftiFiles(path, path, true);
    }

    // The partner keeps the name's compression and letter case, as nibabel's does; failing that, the other
    // compression, if such a file exists. Whether it exists is the opener's question: a header reads without it.
    static string Partner(string path, string bare, bool gz, string extension)
    {
        bool upper = bare[^3..].All(char.IsUpper);
        string stem = bare[..^3] + (upper ? extension.ToUpperInvariant() : extension);
        string gzSuffix = gz ? path[^3..] : upper ? ".GZ" : ".gz";
        string same = gz ? stem + gzSuffix : stem, other = gz ? stem : stem + gzSuffix;
        return !File.Exists(same) && File.Exists(other) ? other : same;
    }

    /// <summary>Throws, naming both, when the pair's other file is missing.</summary>
    public void CheckPartner(string given)
    {
        string partner = given == Header ? Data : Header;
        if (Single || File.Exists(partner) || !File.Exists(given)) return;
        throw new FileNotFoundException($"{given}: its {(partner == Data ? "image" : "header")} file {partner} does not exist", partner);
    }
}
