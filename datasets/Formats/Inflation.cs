namespace Medformer.Datasets.Formats;

/// <summary>
/// The bounds every reader of compressed input (.nii.gz, deflated DICOM, .npz members) puts on what it inflates, so
/// a small hostile file cannot claim, or become, gigabytes in memory.
/// </summary>
static class Inflation
{
    /// <summary>Deflate expands at most 1032:1, so n compressed bytes hold at most this many times n: a header
    /// claiming more is lying (or truncated), and is refused before anything is allocated for it.</summary>
    public const long MaxRatio = 1032;

    /// <summary>What a stream may inflate to when nothing declares its length (a deflated DICOM dataset).</summary>
    public const long MaxUndeclared = 512L << 20;

    /// <summary>Whether <paramref name="compressed"/> bytes of deflate data can hold <paramref name="claimed"/> bytes.</summary>
    public static bool CanHold(long compressed, long claimed) => claimed >= 0 && compressed >= 0 && claimed / MaxRatio <= compressed;

    /// <summary>The most deflate data <paramref name="size"/> bytes can take (stored blocks: 5 bytes each 16 KiB at
    /// worst, and slack): a zip entry whose compressed bytes pass it inflates past the size it states.</summary>
    public static long MaxCompressed(long size) => size + 5 * (size / 16383 + 1) + 1024;
}
