using Medformer.Datasets.Formats;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>
/// Synthetic series written by <see cref="DicomWriter"/>: an oblique stack of slices whose file names and instance
/// numbers are shuffled, so only the positions tell the order; then the faults a series reader must catch.
/// </summary>
public sealed class DicomSeriesTests : IDisposable
{
    const int Rows = 4, Columns = 5;
    const double Gap = 2.5, RowSpacing = 0.7, ColumnSpacing = 0.9;
    static readonly double[] RowDirection = [Math.Cos(Deg(30)), Math.Sin(Deg(30)), 0];
    static readonly double[] ColumnDirection = [-Math.Sin(Deg(30)) * Math.Cos(Deg(20)), Math.Cos(Deg(30)) * Math.Cos(Deg(20)), Math.Sin(Deg(20))];
    static readonly double[] Normal = Cross(RowDirection, ColumnDirection);
    static readonly double[] Origin = [-50.5, 20.25, 100];

    readonly DicomTestFiles files = new();

    public void Dispose() => files.Dispose();

    static double Deg(double degrees) => degrees * Math.PI / 180;

    static double[] Cross(double[] a, double[] b) => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

    static double[] At(double[] origin, double[] step, double k) => [origin[0] + k * step[0], origin[1] + k * step[1], origin[2] + k * step[2]];

    /// <summary>Slice k's value at (r, c): which slice a value came from stays visible after sorting.</summary>
    static long[] Pixels(int k, int rows = Rows) => Enumerable.Range(0, rows * Columns).Select(i => (long)(100 * k + 10 * (i / Columns) + i %
        Columns)).ToArray();

    /// <summary>Writes slices 0..count-1 at Origin + k·step under shuffled names and instance numbers; returns the file of each slice.</summary>
    string[] WriteSeries(int count, double[]? step = null, int seed = 7, string folder = "series", string seriesUid = "1.2.3.100",
        Func<int, DicomWriter>? slice = null, bool positions = true)
    {
        step ??= [Gap * Normal[0], Gap * Normal[1], Gap * Normal[2]];
        var random = new Random(seed);
        int[] instances = Enumerable.Range(1, count).OrderBy(_ => random.Next()).ToArray();
        int[] names = Enumerable.Range(0, count).OrderBy(_ => random.Next()).ToArray();
        var paths = new string[count];
        for (int k = 0; k < count; k++)
        {
            var writer = slice?.Invoke(k) ?? DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(k),
                spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection],
                position: positions ? At(Origin, step, k) : null, instance: positions ? instances[k] : k + 1, seriesUid: seriesUid, thickness: 2);
            paths[k] = files.Write(Path.Combine(folder, $"IM{names[k]:D4}"), writer.File(DicomTransferSyntax.ExplicitVRLittleEndianUid));
        }
        return paths;
    }

    string Folder(string name = "series") => files.PathFor(name);

    static void AssertSlices(Tensor voxels, IReadOnlyList<int> order)
    {
        Assert.Equal(new long[] { order.Count, Rows, Columns }, voxels.shape);
        for (int k = 0; k < order.Count; k++)
        {
            using var slice = voxels[k];
            Assert.Equal(Pixels(order[k]).Select(v => (double)v), DicomTestFiles.Values(slice));
        }
    }

    static void AssertClose(double[] expected, double[] actual, double tolerance = 1e-6)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++) Assert.True(Math.Abs(expected[i] - actual[i]) <= tolerance,
            $"[{i}]: expected {expected[i]}, got {actual[i]}");
    }

    static double[] Column(double[,] affine, int column) => [affine[0, column], affine[1, column], affine[2, column]];

    [Fact]
    public void SlicesAreSortedAlongTheObliqueNormal()
    {
        WriteSeries(6);
        using var volume = Dicom.ReadSeries(Folder());
        AssertSlices(volume.Voxels, [0, 1, 2, 3, 4, 5]);
        Assert.Equal(ScalarType.Int16, volume.Voxels.dtype);
        AssertClose([Gap, RowSpacing, ColumnSpacing], volume.Spacing);
        AssertClose([.. RowDirection.Select(v => v * ColumnSpacing)], Column(volume.Affine, 0));
        AssertClose([.. ColumnDirection.Select(v => v * RowSpacing)], Column(volume.Affine, 1));
        AssertClose([.. Normal.Select(v => v * Gap)], Column(volume.Affine, 2));
        AssertClose(Origin, Column(volume.Affine, 3));
        Assert.Equal(new double[] { 0, 0, 0, 1 }, Enumerable.Range(0, 4).Select(c => volume.Affine[3, c]));
        // Voxel (i, j, k) is slice k's pixel (row j, column i): P_k + i·Δc·row + j·Δr·column (PS3.3 C.7.6.2.1.1).
        var (i, j, k) = (3, 2, 4);
        double[] expected = [.. At(Origin, Normal, k * Gap).Select((p, a) => p + i * ColumnSpacing * RowDirection[a] + j * RowSpacing * ColumnDirection[a])];
        double[] actual = [.. Enumerable.Range(0, 3).Select(r => volume.Affine[r, 0] * i + volume.Affine[r, 1] * j + volume.Affine[r, 2] * k + volume.Affine[r,
            3])];
        AssertClose(expected, actual);
        Assert.Contains(new KeyValuePair<string, string>("Slices", "6"), volume.Header);
        Assert.DoesNotContain(volume.Header, p => p.Key is "SOPInstanceUID" or "InstanceNumber");
        Assert.Equal("LPS", volume.Frame);
    }

    [Fact]
    public void ReversedStacksComeOutAscendingAlongTheNormal()
    {
        // Slice k written at Origin - k·gap·normal: the last written is the first along the normal.
        WriteSeries(5, step: [.. Normal.Select(v => -Gap * v)]);
        using var volume = Dicom.ReadSeries(Folder());
        AssertSlices(volume.Voxels, [4, 3, 2, 1, 0]);
        AssertClose(At(Origin, Normal, -4 * Gap), Column(volume.Affine, 3));
        AssertClose([.. Normal.Select(v => v * Gap)], Column(volume.Affine, 2));
    }

    [Fact]
    public void TiltedStacksKeepTheirShearInTheAffine()
    {
        // Gantry tilt: each slice also moves 0.5 mm down the columns; positions stay evenly spaced on a line.
        double[] step = [.. Normal.Select((v, a) => Gap * v + 0.5 * ColumnDirection[a])];
        WriteSeries(4, step: step);
        using var volume = Dicom.ReadSeries(Folder());
        AssertSlices(volume.Voxels, [0, 1, 2, 3]);
        AssertClose(step, Column(volume.Affine, 2));
        Assert.Equal(Math.Sqrt(Gap * Gap + 0.25), volume.Spacing[0], 6);
    }

    [Fact]
    public void WithoutPositionsInstanceNumbersOrderTheSlices()
    {
        WriteSeries(4, positions: false);
        using var volume = Dicom.ReadSeries(Folder());
        AssertSlices(volume.Voxels, [0, 1, 2, 3]);
        Assert.Equal(2, volume.Spacing[0]);  // SliceThickness
        Assert.Contains(volume.Header, p => p.Key == "Note" && p.Value.Contains("ordered by InstanceNumber"));
    }

    [Fact]
    public void EachSliceKeepsItsOwnRescale()
    {
        WriteSeries(3, slice: k => DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(k),
            spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection], position: At(Origin, Normal, k * Gap),
            instance: k + 1, slope: k + 1, intercept: -1024));
        using var volume = Dicom.ReadSeries(Folder());
        Assert.Equal(ScalarType.Float32, volume.Voxels.dtype);
        for (int k = 0; k < 3; k++)
        {
            using var slice = volume.Voxels[k];
            Assert.Equal(Pixels(k).Select(v => v * (k + 1) - 1024.0), DicomTestFiles.Values(slice));
        }
    }

    [Fact]
    public void AMissingSliceIsReportedWithItsNeighbours()
    {
        var paths = WriteSeries(6);
        File.Delete(paths[3]);
        var e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder()));
        Assert.StartsWith(Folder() + ": ", e.Message);
        Assert.Contains($"5 mm between {Path.GetFileName(paths[2])} and {Path.GetFileName(paths[4])}, 2.5 mm elsewhere (a missing slice?)", e.Message);
    }

    [Fact]
    public void SlicesOfAnotherSizeAreReported()
    {
        var paths = WriteSeries(4, slice: k => DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, k == 2 ? 3 : Rows, Columns, Pixels(k,
            k == 2 ? 3 : Rows),
            spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection], position: At(Origin, Normal, k * Gap), instance: k + 1));
        var e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder()));
        Assert.Contains("the slices differ in size", e.Message);
        Assert.Contains($"{Path.GetFileName(paths[2])} has 3×5", e.Message);
    }

    [Fact]
    public void SlicesOfAnotherOrientationAreReported()
    {
        var paths = WriteSeries(3, slice: k => DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(k),
            spacing: [RowSpacing, ColumnSpacing], orientation: k == 1 ? [1, 0, 0, 0, 1, 0] : [.. RowDirection, .. ColumnDirection], position: At(Origin, Normal,
                k * Gap), instance: k + 1));
        var e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder()));
        Assert.Contains("the slices differ in orientation", e.Message);
        Assert.Contains(Path.GetFileName(paths[1]), e.Message);
    }

    [Fact]
    public void DuplicateAndStrayPositionsAreReported()
    {
        var paths = WriteSeries(3, folder: "dup", slice: k => DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(k),
            spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection], position: At(Origin, Normal, Math.Min(k, 1) * Gap),
                instance: k + 1));
        var e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder("dup")));
        Assert.Contains("lie at the same position", e.Message);
        Assert.Contains(Path.GetFileName(paths[1]), e.Message);
        Assert.Contains(Path.GetFileName(paths[2]), e.Message);

        // Evenly spaced along the normal, but slice 2 is shifted 3 mm along the rows.
        paths = WriteSeries(4, folder: "stray", slice: k => DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(k),
            spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection],
            position: At(At(Origin, Normal, k * Gap), RowDirection, k == 2 ? 3 : 0), instance: k + 1));
        e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder("stray")));
        Assert.Contains($"{Path.GetFileName(paths[2])} at", e.Message);
        Assert.Contains("off the line", e.Message);
    }

    [Fact]
    public void SeveralSeriesAreListedAndChosenBetween()
    {
        WriteSeries(5, seriesUid: "1.2.3.200", seed: 1);
        // A second, smaller series in the same folder, under other names.
        for (int k = 0; k < 2; k++)
            files.Write(Path.Combine("series", $"SCOUT{k}"), DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(10 + k),
                spacing: [1, 1], orientation: [1, 0, 0, 0, 0, -1], position: [0, 10.0 * k, 0], instance: k + 1,
                    seriesUid: "1.2.3.300").File(DicomTransferSyntax.ExplicitVRLittleEndianUid));
        files.Write(Path.Combine("series", "README.txt"), "not DICOM"u8.ToArray());

        var series = Dicom.ListSeries(Folder());
        Assert.Equal(["1.2.3.200", "1.2.3.300"], series.Select(s => s.SeriesInstanceUID));
        Assert.Equal([5, 2], series.Select(s => s.Files.Count));
        Assert.Equal("CT", series[0].Modality);

        using (var largest = Dicom.ReadSeries(Folder()))
        {
            AssertSlices(largest.Voxels, [0, 1, 2, 3, 4]);
            Assert.Contains(largest.Header, p => p.Key == "Note" && p.Value.Contains("the largest of 2 series") && p.Value.Contains("1.2.3.300"));
            Assert.Contains(largest.Header, p => p.Key == "Note" && p.Value.Contains("1 file skipped") && p.Value.Contains("README.txt"));
        }
        using (var scout = Dicom.ReadSeries(Folder(), "1.2.3.300"))
        {
            AssertSlices(scout.Voxels, [10, 11]);
            Assert.Equal(10, scout.Spacing[0]);
        }
        var unknown = Assert.Throws<ArgumentException>(() => Dicom.ReadSeries(Folder(), "9.9"));
        Assert.Contains("1.2.3.200 (CT, 5 files)", unknown.Message);

        // A tie leaves no largest: the caller must name one.
        for (int k = 2; k < 5; k++)
            files.Write(Path.Combine("series", $"SCOUT{k}"), DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, Pixels(10 + k),
                spacing: [1, 1], orientation: [1, 0, 0, 0, 0, -1], position: [0, 10.0 * k, 0], instance: k + 1,
                    seriesUid: "1.2.3.300").File(DicomTransferSyntax.ExplicitVRLittleEndianUid));
        var tie = Assert.Throws<ArgumentException>(() => Dicom.ReadSeries(Folder()));
        Assert.Contains("1.2.3.200", tie.Message);
        Assert.Contains("1.2.3.300", tie.Message);
    }

    [Fact]
    public void AFolderWithoutImagesIsReported()
    {
        files.Write(Path.Combine("empty", "notes.txt"), "nothing"u8.ToArray());
        var e = Assert.Throws<InvalidDataException>(() => Dicom.ReadSeries(Folder("empty")));
        Assert.Contains("no DICOM image files", e.Message);
        Assert.Throws<DirectoryNotFoundException>(() => Dicom.ReadSeries(Folder("absent")));
    }

    [Fact]
    public void AMultiFrameFileIsItsOwnVolume()
    {
        var samples = Enumerable.Range(0, 3).SelectMany(k => Pixels(k)).ToArray();
        files.Write(Path.Combine("multi", "frames.dcm"), DicomWriter.Image(DicomTransferSyntax.ExplicitVRLittleEndianUid, Rows, Columns, samples, frames: 3,
            spacing: [RowSpacing, ColumnSpacing], orientation: [.. RowDirection, .. ColumnDirection], position: Origin, instance: 1, thickness: 1.5)
            .File(DicomTransferSyntax.ExplicitVRLittleEndianUid));
        using var volume = Dicom.ReadSeries(Folder("multi"));
        AssertSlices(volume.Voxels, [0, 1, 2]);
        AssertClose([1.5, RowSpacing, ColumnSpacing], volume.Spacing);
        AssertClose([.. Normal.Select(v => v * 1.5)], Column(volume.Affine, 2));
    }
}
