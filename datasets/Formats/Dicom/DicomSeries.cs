using System.Globalization;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// A folder of single-frame files to one volume, the way dicom2nifti and ITK's series reader do it: files are grouped by
/// SeriesInstanceUID; slices are sorted by their ImagePositionPatient projected on the slice normal (row direction ×
/// column direction), or by InstanceNumber when positions are missing. The slices must agree in size, orientation,
/// pixel spacing and samples, and lie evenly spaced on a line: a missing slice, a duplicate position or an irregular
/// gap is an <see cref="InvalidDataException"/> naming the files either side, never a silently wrong affine. Each
/// slice gets its own rescale. Files without "DICM" and DICOM files without pixel data (DICOMDIR, reports) are skipped.
/// </summary>
public static class DicomSeries
{
    /// <summary>Positions may deviate from an even, straight progression by this fraction of the slice gap (or 0.01 mm, if more).</summary>
    public const double SpacingTolerance = 0.01;

    sealed record Slice(string Path, DicomImageInfo Info);

    public static IReadOnlyList<DicomSeriesInfo> List(string folder) => Scan(folder, out _).Select(g => g.Series).ToList();

    public static MedicalVolume Read(string folder, string? seriesInstanceUid = null)
    {
        var groups = Scan(folder, out var skipped);
        if (groups.Count == 0)
            throw Dicom.Bad(folder, $"no DICOM image files in the folder ({skipped.Count} other file{(skipped.Count == 1 ? "" : "s")} skipped)");
        var notes = new List<string>();
        (DicomSeriesInfo Series, List<Slice> Slices) chosen;
        if (seriesInstanceUid is not null)
        {
            chosen = groups.FirstOrDefault(g => g.Series.SeriesInstanceUID == seriesInstanceUid);
            if (chosen.Series is null)
                throw new ArgumentException($"{folder}: no series {seriesInstanceUid}; it holds {string.Join("; ", groups.Select(g => g.Series))}",
                    nameof(seriesInstanceUid));
        }
        else
        {
            if (groups.Count > 1 && groups[0].Slices.Count == groups[1].Slices.Count)
                throw new ArgumentException($"{folder}: {groups.Count} series and no single largest one; name one by its SeriesInstanceUID: " +
                    $"{string.Join("; ", groups.Select(g => g.Series))}", nameof(seriesInstanceUid));
            chosen = groups[0];
            if (groups.Count > 1)
                notes.Add($"the largest of {groups.Count} series in the folder; the others: {string.Join("; ", groups.Skip(1).Select(g => g.Series))}");
        }
        if (skipped.Count > 0)
            notes.Add($"{skipped.Count} file{(skipped.Count == 1 ? "" : "s")} skipped (not DICOM, or no image): " +
                $"{string.Join(", ", skipped.Take(5).Select(Path.GetFileName))}{(skipped.Count > 5 ? ", ..." : "")}");
        return Assemble(folder, chosen.Slices, notes);
    }

    static List<(DicomSeriesInfo Series, List<Slice> Slices)> Scan(string folder, out List<string> skipped)
    {
        if (!Directory.Exists(folder)) throw new DirectoryNotFoundException($"{folder}: no such folder");
        skipped = [];
        var bySeries = new Dictionary<string, (DicomFile First, List<Slice> Slices)>(StringComparer.Ordinal);
        foreach (string path in Directory.EnumerateFiles(folder).Order(StringComparer.Ordinal))
        {
            if (!HasMagic(path))
            {
                skipped.Add(path);
                continue;
            }
            var file = DicomFile.Read(path);
            if (file.PixelData is null)
            {
                skipped.Add(path);
                continue;
            }
            var info = file.GetImageInfo();
            string uid = info.SeriesInstanceUID ?? throw Dicom.Bad(path, "no SeriesInstanceUID (0020,000E): the file cannot be put in a series");
            if (!bySeries.TryGetValue(uid, out var group)) bySeries[uid] = group = (file, []);
            group.Slices.Add(new Slice(path, info));
        }
        return bySeries
            .Select(p => (new DicomSeriesInfo(p.Key, p.Value.First.GetString(DicomTag.Modality), p.Value.First.GetString(DicomTag.SeriesDescription),
                p.Value.First.GetInteger(DicomTag.SeriesNumber), p.Value.Slices.Select(s => s.Path).ToList()), p.Value.Slices))
            .OrderByDescending(g => g.Item2.Count).ThenBy(g => g.Item1.SeriesInstanceUID, StringComparer.Ordinal)
            .ToList();
    }

    static bool HasMagic(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1);
        if (stream.Length < 132) return false;
        Span<byte> magic = stackalloc byte[4];
        stream.Position = 128;
        stream.ReadExactly(magic);
        return magic.SequenceEqual("DICM"u8);
    }

    static MedicalVolume Assemble(string folder, List<Slice> slices, List<string> notes)
    {
        var first = slices[0];
        if (slices.Count == 1 && first.Info.NumberOfFrames > 1)
        {
            var single = Dicom.Read(first.Path);
            return single with { Header = [.. single.Header, .. notes.Select(n => new KeyValuePair<string, string>("Note", n))] };
        }
        foreach (var slice in slices)
        {
            if (slice.Info.NumberOfFrames > 1)
                throw new NotSupportedException($"{slice.Path}: {slice.Info.NumberOfFrames} frames in a series of {slices.Count} files; series " +
                    "of multi-frame files are not supported");
            Agree(folder, first, slice, "size", s => $"{s.Info.Rows}×{s.Info.Columns}", (a, b) => a.Rows == b.Rows && a.Columns == b.Columns);
            Agree(folder, first, slice, "samples per pixel", s => $"{s.Info.SamplesPerPixel} ({s.Info.PhotometricInterpretation})",
                (a, b) => a.SamplesPerPixel == b.SamplesPerPixel && a.PhotometricInterpretation == b.PhotometricInterpretation);
            Agree(folder, first, slice, "pixel spacing", s => Text(s.Info.PixelSpacing), (a, b) => Close(a.PixelSpacing, b.PixelSpacing, 1e-4));
            Agree(folder, first, slice, "orientation", s => Text(s.Info.ImageOrientationPatient), (a, b) => Close(a.ImageOrientationPatient,
                b.ImageOrientationPatient, 1e-3));
        }

        var (rowSpacing, columnSpacing) = Dicom.PixelSpacing(first.Info, notes);
        var (row, column, normal) = Dicom.Directions(first.Info, notes);
        double[] origin, step;
        if (slices.All(s => s.Info.ImagePositionPatient is not null))
        {
            slices = [.. slices.OrderBy(s => DicomGeometry.Dot(s.Info.ImagePositionPatient!, normal))];
            (origin, step) = CheckPositions(folder, slices, normal);
        }
        else
        {
            slices = OrderByInstanceNumber(folder, slices);
            notes.Add("ImagePositionPatient missing: slices ordered by InstanceNumber");
            origin = first.Info.ImagePositionPatient ?? [0, 0, 0];
            step = DicomGeometry.Scale(normal, Dicom.SliceSpacing(first.Info, notes, slices.Count > 1));
        }

        var dtype = CommonDtype(slices);
        bool colour = first.Info.SamplesPerPixel == 3;
        long[] shape = colour ? [3, slices.Count, first.Info.Rows, first.Info.Columns] : [slices.Count, first.Info.Rows, first.Info.Columns];
        using var scope = NewDisposeScope();
        var voxels = empty(shape, dtype: dtype);
        for (int k = 0; k < slices.Count; k++)
        {
            using var inner = NewDisposeScope();
            var values = ReadSlice(slices[k]);
            voxels.select(colour ? 1 : 0, k).copy_(values.to(dtype));
        }
        var affine = DicomGeometry.Affine(DicomGeometry.Scale(row, columnSpacing), DicomGeometry.Scale(column, rowSpacing), step, origin);
        var info = slices[0].Info;
        // The volume's header is the first slice's, less what names one slice alone.
        var header = Dicom.Header(info, notes).Where(p => p.Key is not ("SOPInstanceUID" or "InstanceNumber")).ToList();
        header.Insert(0, new("Slices", slices.Count.ToString(CultureInfo.InvariantCulture)));
        header.Insert(1, new("Folder", folder));
        string storedType = slices.Select(s => s.Info.StoredType).Distinct().Count() == 1 ? info.StoredType : string.Join("|",
            slices.Select(s => s.Info.StoredType).Distinct());
        return new MedicalVolume(scope.MoveToOuter(voxels), [DicomGeometry.Norm(step), rowSpacing, columnSpacing], affine, "LPS", storedType, folder, header);
    }

    /// <summary>The first position and the step between slices, after checking the sorted positions are distinct, evenly spaced and on a line.</summary>
    static (double[] Origin, double[] Step) CheckPositions(string folder, List<Slice> slices, double[] normal)
    {
        var positions = slices.Select(s => s.Info.ImagePositionPatient!).ToList();
        if (slices.Count == 1) return (positions[0], DicomGeometry.Scale(normal, Dicom.SliceSpacing(slices[0].Info, [], false)));
        var gaps = new double[slices.Count - 1];
        for (int k = 0; k + 1 < slices.Count; k++)
        {
            gaps[k] = DicomGeometry.Dot(DicomGeometry.Sub(positions[k + 1], positions[k]), normal);
            if (gaps[k] < 1e-3)
                throw Dicom.Bad(folder, $"{Name(slices[k])} and {Name(slices[k + 1])} lie at the same position along the slice normal ({Text(positions[k])})");
        }
        double median = gaps.Order().ElementAt(gaps.Length / 2);
        double tolerance = Math.Max(0.01, SpacingTolerance * median);
        for (int k = 0; k < gaps.Length; k++)
            if (Math.Abs(gaps[k] - median) > tolerance)
                throw Dicom.Bad(folder,
                    $"slices are not evenly spaced: {Mm(gaps[k])} mm between {Name(slices[k])} and {Name(slices[k + 1])}, {Mm(median)} mm elsewhere"
                    + (gaps[k] > median ? " (a missing slice?)" : ""));
        var step = DicomGeometry.Scale(DicomGeometry.Sub(positions[^1], positions[0]), 1.0 / (slices.Count - 1));
        var direction = DicomGeometry.Scale(step, 1 / DicomGeometry.Norm(step));
        for (int k = 0; k < slices.Count; k++)
        {
            var off = DicomGeometry.Sub(positions[k], positions[0]);
            var across = DicomGeometry.Sub(off, DicomGeometry.Scale(direction, DicomGeometry.Dot(off, direction)));
            if (DicomGeometry.Norm(across) > tolerance)
                throw Dicom.Bad(folder,
                    $"{Name(slices[k])} at {Text(positions[k])} lies {Mm(DicomGeometry.Norm(across))} mm off the line through the other slices' positions");
        }
        return (positions[0], step);
    }

    static List<Slice> OrderByInstanceNumber(string folder, List<Slice> slices)
    {
        if (slices.FirstOrDefault(s => s.Info.InstanceNumber is null) is { } unnumbered)
            throw Dicom.Bad(folder, $"{Name(unnumbered)} has neither ImagePositionPatient nor InstanceNumber, so the slices cannot be ordered");
        var sorted = slices.OrderBy(s => s.Info.InstanceNumber).ToList();
        for (int k = 0; k + 1 < sorted.Count; k++)
            if (sorted[k].Info.InstanceNumber == sorted[k + 1].Info.InstanceNumber)
                throw Dicom.Bad(folder,
                    $"{Name(sorted[k])} and {Name(sorted[k + 1])} have no positions and the same InstanceNumber {sorted[k].Info.InstanceNumber}");
        return sorted;
    }

    /// <summary>The slice's values, read again from its file (which must still be what the scan saw).</summary>
    static Tensor ReadSlice(Slice slice)
    {
        using var volume = Dicom.Read(slice.Path);
        var info = slice.Info;
        long[] expected = info.SamplesPerPixel == 3 ? [3, info.Rows, info.Columns] : [info.Rows, info.Columns];
        if (!volume.Voxels.shape.SequenceEqual(expected))
            throw Dicom.Bad(slice.Path, "the file changed while its series was read");
        return volume.Voxels.alias();
    }

    // One dtype for all slices: float32 if any slice is rescaled, else the narrowest integer type that holds them all.
    static ScalarType CommonDtype(List<Slice> slices)
    {
        if (slices.Any(s => s.Info.IsRescaled)) return ScalarType.Float32;
        var types = slices.Select(s => DicomPixels.StoredDtype(s.Info)).Distinct().ToList();
        if (types.Count == 1) return types[0];
        if (types.Contains(ScalarType.Int64)) return ScalarType.Int64;
        if (types.Contains(ScalarType.Int32)) return ScalarType.Int32;
        return ScalarType.Int16;
    }

    static void Agree(string folder, Slice first, Slice other, string what, Func<Slice, string> show, Func<DicomImageInfo, DicomImageInfo, bool> same)
    {
        if (!same(first.Info, other.Info))
            throw Dicom.Bad(folder, $"the slices differ in {what}: {Name(first)} has {show(first)}, {Name(other)} has {show(other)}");
    }

    static bool Close(double[]? a, double[]? b, double tolerance) =>
        a is null ? b is null : b is not null && a.Length == b.Length && a.Zip(b).All(p => Math.Abs(p.First - p.Second) <= tolerance * Math.Max(1,
            Math.Abs(p.First)));

    static string Name(Slice slice) => Path.GetFileName(slice.Path);

    static string Text(double[]? values) => values is null ? "none" :
        $"[{string.Join(", ", values.Select(v => v.ToString("G6", CultureInfo.InvariantCulture)))}]";

    static string Mm(double value) => value.ToString("G4", CultureInfo.InvariantCulture);
}
