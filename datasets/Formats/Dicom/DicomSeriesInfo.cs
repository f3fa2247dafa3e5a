namespace Medformer.Datasets.Formats;

/// <summary>One image series found in a folder: its UID, what the first file says of it, and its files.</summary>
public sealed record DicomSeriesInfo(
    string SeriesInstanceUID,
    string? Modality,
    string? SeriesDescription,
    long? SeriesNumber,
    IReadOnlyList<string> Files)
{
    public override string ToString() =>
        $"{SeriesInstanceUID} ({Modality ?? "no modality"}{(SeriesNumber is { } n ? $", series {n}" : "")}{(SeriesDescription is { } d ? $", '{d}'" : "")}, " +
            $"{Files.Count} file{(Files.Count == 1 ? "" : "s")})";
}
