namespace Medformer.Datasets.Formats;

/// <summary>Small vector sums for the DICOM patient coordinate system (LPS, mm).</summary>
static class DicomGeometry
{
    public static double[] Cross(double[] a, double[] b) =>
        [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

    public static double Dot(double[] a, double[] b) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

    public static double Norm(double[] a) => Math.Sqrt(Dot(a, a));

    public static double[] Add(double[] a, double[] b) => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];

    public static double[] Sub(double[] a, double[] b) => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];

    public static double[] Scale(double[] a, double s) => [a[0] * s, a[1] * s, a[2] * s];

    /// <summary>
    /// ImageOrientationPatient with both directions made unit length, or null when they are not (nearly) unit and
    /// orthogonal. Writers round the cosines to a few digits, so a small error is expected and removed.
    /// </summary>
    public static double[]? Orthonormal(double[] orientation)
    {
        double[] row = orientation[..3], column = orientation[3..];
        double rowNorm = Norm(row), columnNorm = Norm(column);
        if (Math.Abs(rowNorm - 1) > 0.01 || Math.Abs(columnNorm - 1) > 0.01) return null;
        row = Scale(row, 1 / rowNorm);
        column = Scale(column, 1 / columnNorm);
        if (Math.Abs(Dot(row, column)) > 0.01) return null;
        return [.. row, .. column];
    }

    /// <summary>
    /// The voxel-to-LPS affine: column 0 steps along a row (index i, along W), column 1 down a column (j, along H),
    /// column 2 from slice to slice (k, along D), column 3 is the first voxel's centre (PS3.3 §C.7.6.2.1.1).
    /// </summary>
    public static double[,] Affine(double[] row, double[] column, double[] slice, double[] origin)
    {
        var affine = new double[4, 4];
        for (int r = 0; r < 3; r++)
        {
            affine[r, 0] = row[r];
            affine[r, 1] = column[r];
            affine[r, 2] = slice[r];
            affine[r, 3] = origin[r];
        }
        affine[3, 3] = 1;
        return affine;
    }
}
