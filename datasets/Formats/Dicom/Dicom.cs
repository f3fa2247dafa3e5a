using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// DICOM Part 10 files to <see cref="MedicalVolume"/>s: one file (a slice [H,W], frames [F,H,W], colour [3,H,W] or
/// [3,F,H,W]) or a series folder sorted into a volume [D,H,W]. Native pixel data in Implicit VR Little Endian,
/// Explicit VR Little and Big Endian and Deflated Explicit VR Little Endian; compressed syntaxes are refused with
/// <see cref="NotSupportedException"/>, malformed files with <see cref="InvalidDataException"/>, both naming the file.
/// A file must have the 128-byte preamble and "DICM" (PS3.10 §7.1); bare datasets without them are refused, as
/// pydicom refuses them unless forced.
/// </summary>
public static class Dicom
{
    /// <summary>The file's elements and transfer syntax, without reading pixel data (for listings: see <see cref="DicomFile.Dump"/>).</summary>
    public static DicomFile ReadHeader(string path) => DicomFile.Read(path);

    /// <summary>
    /// The image in one file, rescaled to float32 when RescaleSlope/RescaleIntercept are present and not the identity
    /// (CT in Hounsfield units), else in its stored type. Affine in LPS (Frame "LPS").
    /// </summary>
    public static MedicalVolume Read(string path)
    {
        using var source = DicomSource.Open(path);
        return Read(source, path);
    }

    /// <summary>The image in a file held in memory; <paramref name="path"/> names it in errors and in the result.</summary>
    public static MedicalVolume Read(ReadOnlyMemory<byte> bytes, string path)
    {
        using var source = DicomSource.FromBytes(bytes);
        return Read(source, path);
    }

    static MedicalVolume Read(DicomSource source, string path)
    {
        // A compressed file is refused before its dataset is walked: whatever follows, it cannot be decoded here.
        var meta = DicomFile.Parse(source, path, out _, metaOnly: true);
        if (meta.TransferSyntax.Encapsulated)
            throw new NotSupportedException($"{path}: the pixel data is compressed with {meta.TransferSyntax}; only native " +
                "(uncompressed) pixel data can be read. "
                + "Decompress the file first, e.g. with gdcmconv --raw or dcmdjpeg/dcmdjp2k");
        var file = DicomFile.Parse(source, path, out var dataset);
        try
        {
            var info = file.GetImageInfo();
            var notes = new List<string>();
            var (spacing, affine) = SingleFileGeometry(info, notes);
            using var scope = NewDisposeScope();
            var stored = DicomPixels.Decode(info, file.PixelData!, dataset, path);
            var voxels = DicomPixels.Rescale(stored, info);
            return new MedicalVolume(scope.MoveToOuter(voxels), spacing, affine, "LPS", info.StoredType, path, Header(info, notes));
        }
        finally
        {
            if (!ReferenceEquals(dataset, source)) dataset.Dispose();
        }
    }

    /// <summary>
    /// The series in <paramref name="folder"/> (its files, not subfolders) as one volume [D,H,W] ([3,D,H,W] for
    /// colour), slices sorted along the slice normal. Without <paramref name="seriesInstanceUid"/> the folder's only
    /// series is read, or its largest when it holds several. See <see cref="DicomSeries"/>.
    /// </summary>
    public static MedicalVolume ReadSeries(string folder, string? seriesInstanceUid = null) => DicomSeries.Read(folder, seriesInstanceUid);

    /// <summary>The image series in <paramref name="folder"/>, largest first.</summary>
    public static IReadOnlyList<DicomSeriesInfo> ListSeries(string folder) => DicomSeries.List(folder);

    /// <summary>[row spacing, column spacing] (with the frame spacing first for several frames) and the LPS affine.</summary>
    internal static (double[] Spacing, double[,] Affine) SingleFileGeometry(DicomImageInfo info, List<string> notes)
    {
        var (rowSpacing, columnSpacing) = PixelSpacing(info, notes);
        var (row, column, normal) = Directions(info, notes);
        var origin = info.ImagePositionPatient;
        if (origin is null) notes.Add("ImagePositionPatient absent: the first pixel is placed at the origin");
        origin ??= [0, 0, 0];
        double[] step;
        int frames = info.NumberOfFrames;
        if (frames > 1 && info.FramePositions is { } positions && DicomGeometry.Norm(DicomGeometry.Sub(positions[^1], positions[0])) > 0)
        {
            origin = positions[0];
            step = DicomGeometry.Scale(DicomGeometry.Sub(positions[^1], positions[0]), 1.0 / (frames - 1));
            notes.Add("frame spacing from the per-frame positions (PerFrameFunctionalGroupsSequence)");
            // Frames keep the file's order (it may be by time or stack); say so when they are not one even stack.
            double tolerance = Math.Max(0.01, 0.01 * DicomGeometry.Norm(step));
            if (Enumerable.Range(0, frames).Any(f => DicomGeometry.Norm(DicomGeometry.Sub(positions[f], DicomGeometry.Add(origin, DicomGeometry.Scale(step,
                f)))) > tolerance))
                notes.Add("frames are not evenly spaced on a line: the affine's frame step is the mean from the first frame to the last");
        }
        else if (frames > 1 && info.GridFrameOffsetVector is { } offsets && offsets.Length == frames && offsets[^1] != offsets[0])
        {
            origin = DicomGeometry.Add(origin, DicomGeometry.Scale(normal, offsets[0]));
            step = DicomGeometry.Scale(normal, (offsets[^1] - offsets[0]) / (frames - 1));
            notes.Add("frame spacing from GridFrameOffsetVector");
        }
        else
        {
            step = DicomGeometry.Scale(normal, SliceSpacing(info, notes, frames > 1));
        }
        var affine = DicomGeometry.Affine(DicomGeometry.Scale(row, columnSpacing), DicomGeometry.Scale(column, rowSpacing), step, origin);
        double[] spacing = frames > 1 ? [DicomGeometry.Norm(step), rowSpacing, columnSpacing] : [rowSpacing, columnSpacing];
        return (spacing, affine);
    }

    internal static (double Row, double Column) PixelSpacing(DicomImageInfo info, List<string> notes)
    {
        if (info.PixelSpacing is { } s) return (s[0], s[1]);
        notes.Add("PixelSpacing absent: 1 mm assumed");
        return (1, 1);
    }

    internal static (double[] Row, double[] Column, double[] Normal) Directions(DicomImageInfo info, List<string> notes)
    {
        if (info.ImageOrientationPatient is { } o) return (o[..3], o[3..], info.SliceNormal!);
        notes.Add("ImageOrientationPatient absent: rows along L, columns along P assumed");
        return ([1, 0, 0], [0, 1, 0], [0, 0, 1]);
    }

    /// <summary>The distance between slices when no positions tell it: SpacingBetweenSlices, else SliceThickness, else 1 mm.</summary>
    internal static double SliceSpacing(DicomImageInfo info, List<string> notes, bool needed)
    {
        if (info.SpacingBetweenSlices is { } between && Math.Abs(between) > 0) return Math.Abs(between);
        if (info.SliceThickness is { } thickness && thickness > 0)
        {
            if (needed) notes.Add("slice spacing taken from SliceThickness");
            return thickness;
        }
        if (needed) notes.Add("slice spacing unknown: 1 mm assumed");
        return 1;
    }

    internal static List<KeyValuePair<string, string>> Header(DicomImageInfo info, IEnumerable<string> notes)
    {
        var header = new List<KeyValuePair<string, string>>();
        void Add(string key, object? value)
        {
            string? text = value switch
            {
                null => null,
                double d => Number(d),
                double[] a => string.Join("\\", a.Select(Number)),
                IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
                _ => value.ToString(),
            };
            if (text is not null) header.Add(new(key, text));
        }
        Add("TransferSyntax", info.TransferSyntax);
        Add("Modality", info.Modality);
        Add("PatientID", info.PatientID);
        Add("StudyInstanceUID", info.StudyInstanceUID);
        Add("SeriesInstanceUID", info.SeriesInstanceUID);
        Add("SOPInstanceUID", info.SOPInstanceUID);
        Add("InstanceNumber", info.InstanceNumber);
        Add("Rows", info.Rows);
        Add("Columns", info.Columns);
        Add("NumberOfFrames", info.NumberOfFrames);
        Add("SamplesPerPixel", info.SamplesPerPixel);
        Add("PhotometricInterpretation", info.PhotometricInterpretation);
        Add("PlanarConfiguration", info.PlanarConfiguration);
        Add("BitsAllocated", info.BitsAllocated);
        Add("BitsStored", info.BitsStored);
        Add("HighBit", info.HighBit);
        Add("PixelRepresentation", info.PixelRepresentation);
        Add("RescaleSlope", info.RescaleSlope);
        Add("RescaleIntercept", info.RescaleIntercept);
        Add("RescaleType", info.RescaleType);
        Add("PixelSpacing", info.PixelSpacing);
        Add("SliceThickness", info.SliceThickness);
        Add("SpacingBetweenSlices", info.SpacingBetweenSlices);
        Add("ImageOrientationPatient", info.ImageOrientationPatient);
        Add("ImagePositionPatient", info.ImagePositionPatient);
        switch (info.PhotometricInterpretation)
        {
            case "MONOCHROME1": header.Add(new("Note", "MONOCHROME1: higher values display darker; values are kept as stored")); break;
            case "PALETTE COLOR": header.Add(new("Note", "PALETTE COLOR: values are palette indices; the palette is not applied")); break;
            case "YBR_FULL": header.Add(new("Note", "YBR_FULL: channels are Y, Cb, Cr as stored, not converted to RGB")); break;
        }
        if (info.DoseGridScaling is { } scaling) header.Add(new("Note", $"DoseGridScaling {Number(scaling)} not applied: dose in Gy is the value times it"));
        if (info.HasModalityLUT) header.Add(new("Note", "ModalityLUTSequence present but not applied"));
        foreach (string note in notes) header.Add(new("Note", note));
        return header;
    }

    static string Number(double value) => value.ToString(CultureInfo.InvariantCulture);

    internal static InvalidDataException Bad(string path, string fault) => new($"{path}: {fault}");
}
