using System.Globalization;

namespace Medformer.Datasets.Formats;

/// <summary>
/// The attributes that describe a DICOM image (Image Pixel, Image Plane and General Series modules), with pydicom's
/// keywords. Geometry missing at the top level is taken from the functional groups of enhanced multi-frame files
/// (shared first, then the first frame's). Built by <see cref="From"/>, which checks that each is well formed.
/// </summary>
public sealed record DicomImageInfo(
    int Rows,
    int Columns,
    int BitsAllocated,
    int BitsStored,
    int HighBit,
    int PixelRepresentation,
    int SamplesPerPixel,
    string PhotometricInterpretation,
    int NumberOfFrames,
    int? PlanarConfiguration,
    double? RescaleSlope,
    double? RescaleIntercept,
    string? RescaleType,
    double[]? PixelSpacing,
    double? SliceThickness,
    double? SpacingBetweenSlices,
    double[]? ImageOrientationPatient,
    double[]? ImagePositionPatient,
    int? InstanceNumber,
    string? SeriesInstanceUID,
    string? StudyInstanceUID,
    string? SOPInstanceUID,
    string? Modality,
    string? PatientID,
    DicomTransferSyntax TransferSyntax)
{
    /// <summary>Each frame's ImagePositionPatient, from the per-frame functional groups of an enhanced multi-frame file.</summary>
    public double[][]? FramePositions { get; init; }

    /// <summary>RT Dose frames' offsets along the slice normal from ImagePositionPatient (mm).</summary>
    public double[]? GridFrameOffsetVector { get; init; }

    /// <summary>RT Dose: dose in Gy is the stored value times this; pydicom does not apply it, nor does this reader.</summary>
    public double? DoseGridScaling { get; init; }

    /// <summary>A Modality LUT Sequence (0028,3000) is present; it is not applied (pydicom's pixel_array does not either).</summary>
    public bool HasModalityLUT { get; init; }

    /// <summary>The rescale is present and not the identity, so values become float32.</summary>
    public bool IsRescaled => (RescaleSlope ?? 1) != 1 || (RescaleIntercept ?? 0) != 0;

    public bool IsSigned => PixelRepresentation == 1;

    /// <summary>The stored sample type in numpy's words: uint8, int16, ..., or "bit" for 1-bit (packed) data.</summary>
    public string StoredType => BitsAllocated == 1 ? "bit" : $"{(IsSigned ? "int" : "uint")}{BitsAllocated}";

    /// <summary>The unit normal of the image plane (row direction × column direction), LPS; null without an orientation.</summary>
    public double[]? SliceNormal => ImageOrientationPatient is { } o ? DicomGeometry.Cross(o[..3], o[3..]) : null;

    public static DicomImageInfo From(DicomFile file)
    {
        string path = file.Path;
        if (file.PixelData is null) throw Dicom.Bad(path, "no Pixel Data (7FE0,0010): the file holds no image");
        int rows = Required(file, DicomTag.Rows, 1, ushort.MaxValue);
        int columns = Required(file, DicomTag.Columns, 1, ushort.MaxValue);
        int bitsAllocated = Required(file, DicomTag.BitsAllocated, 1, 64);
        int bitsStored = Required(file, DicomTag.BitsStored, 1, bitsAllocated);
        int highBit = Optional(file, DicomTag.HighBit, bitsStored - 1, bitsAllocated - 1) ?? bitsStored - 1;
        int representation = Required(file, DicomTag.PixelRepresentation, 0, 1);
        int samples = Required(file, DicomTag.SamplesPerPixel, 1, ushort.MaxValue);
        string photometric = file.GetString(DicomTag.PhotometricInterpretation)
            ?? throw Dicom.Bad(path, "no Photometric Interpretation (0028,0004)");
        int frames = Optional(file, DicomTag.NumberOfFrames, 1, int.MaxValue) ?? 1;
        int? planar = Optional(file, DicomTag.PlanarConfiguration, 0, 1);
        if (samples > 1 && planar is null) throw Dicom.Bad(path, $"{samples} samples per pixel but no Planar Configuration (0028,0006)");

        var spacing = Decimals(file, 2, true, [DicomTag.PixelSpacing], [DicomTag.SharedFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence,
            DicomTag.PixelSpacing],
            [DicomTag.PerFrameFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence, DicomTag.PixelSpacing], [DicomTag.ImagerPixelSpacing]);
        double? thickness = Decimals(file, 1, false, [DicomTag.SliceThickness], [DicomTag.SharedFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence,
            DicomTag.SliceThickness],
            [DicomTag.PerFrameFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence, DicomTag.SliceThickness])?[0];
        double? between = Decimals(file, 1, false, [DicomTag.SpacingBetweenSlices], [DicomTag.SharedFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence,
            DicomTag.SpacingBetweenSlices],
            [DicomTag.PerFrameFunctionalGroupsSequence, DicomTag.PixelMeasuresSequence, DicomTag.SpacingBetweenSlices])?[0];
        var orientation = Decimals(file, 6, false, [DicomTag.ImageOrientationPatient], [DicomTag.SharedFunctionalGroupsSequence,
            DicomTag.PlaneOrientationSequence, DicomTag.ImageOrientationPatient],
            [DicomTag.PerFrameFunctionalGroupsSequence, DicomTag.PlaneOrientationSequence, DicomTag.ImageOrientationPatient]);
        if (orientation is not null) orientation = DicomGeometry.Orthonormal(orientation) ?? throw Dicom.Bad(path,
            $"Image Orientation Patient (0020,0037) " +
                $"[{string.Join(", ", orientation.Select(v => v.ToString(CultureInfo.InvariantCulture)))}] is not two orthogonal directions");
        var position = Decimals(file, 3, false, [DicomTag.ImagePositionPatient], [DicomTag.PerFrameFunctionalGroupsSequence, DicomTag.PlanePositionSequence,
            DicomTag.ImagePositionPatient],
            [DicomTag.SharedFunctionalGroupsSequence, DicomTag.PlanePositionSequence, DicomTag.ImagePositionPatient]);

        return new DicomImageInfo(
            rows, columns, bitsAllocated, bitsStored, highBit, representation, samples, photometric, frames, planar,
            file.GetDecimals(DicomTag.RescaleSlope)?[0], file.GetDecimals(DicomTag.RescaleIntercept)?[0], file.GetString(DicomTag.RescaleType),
            spacing, thickness, between, orientation, position,
            (int?)file.GetInteger(DicomTag.InstanceNumber),
            file.GetString(DicomTag.SeriesInstanceUID), file.GetString(DicomTag.StudyInstanceUID), file.GetString(DicomTag.SOPInstanceUID),
            file.GetString(DicomTag.Modality), file.GetString(DicomTag.PatientID), file.TransferSyntax)
        {
            FramePositions = frames > 1 ? FramePositionsOf(file, frames) : null,
            GridFrameOffsetVector = file.GetDecimals(DicomTag.GridFrameOffsetVector),
            DoseGridScaling = file.GetDecimals(DicomTag.DoseGridScaling)?[0],
            HasModalityLUT = file.Find(DicomTag.ModalityLUTSequence) is not null,
        };
    }

    static int Required(DicomFile file, DicomTag tag, int min, int max) =>
        Optional(file, tag, min, max) ?? throw Dicom.Bad(file.Path, $"no {DicomDictionary.Keyword(tag)} {tag}, which an image needs");

    static int? Optional(DicomFile file, DicomTag tag, int min, int max)
    {
        long? value = file.GetInteger(tag);
        if (value is null) return null;
        if (value < min || value > max) throw Dicom.Bad(file.Path, $"{DicomDictionary.Keyword(tag)} {tag} is {value}, outside {min}..{max}");
        return (int)value;
    }

    /// <summary>The first of <paramref name="paths"/> present, with <paramref name="count"/> values (positive ones if asked).</summary>
    static double[]? Decimals(DicomFile file, int count, bool positive, params DicomTag[][] paths)
    {
        foreach (var tags in paths)
        {
            if (file.Find(tags) is not { } element) continue;
            var values = file.GetDecimals(element);
            if (values is null) continue;
            if (values.Length != count)
                throw Dicom.Bad(file.Path, $"{DicomFile.Name(element)} has {values.Length} values, not {count}");
            if (positive && values.Any(v => v <= 0))
                throw Dicom.Bad(file.Path,
                    $"{DicomFile.Name(element)} [{string.Join(", ", values.Select(v => v.ToString(CultureInfo.InvariantCulture)))}] is not positive");
            return values;
        }
        return null;
    }

    static double[][]? FramePositionsOf(DicomFile file, int frames)
    {
        if (file.IndexOf(DicomTag.PerFrameFunctionalGroupsSequence) is not { } perFrame || file.Elements[perFrame].Items != frames) return null;
        var positions = new double[frames][];
        for (int frame = 0; frame < frames; frame++)
        {
            if (file.FindInItem(perFrame, frame, DicomTag.PlanePositionSequence) is not { } plane
                || file.FindInItem(plane, 0, DicomTag.ImagePositionPatient) is not { } element) return null;
            var values = file.GetDecimals(file.Elements[element]);
            if (values is not { Length: 3 }) return null;
            positions[frame] = values;
        }
        return positions;
    }
}
