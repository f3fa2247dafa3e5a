using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Writes a tensor as a single-file NIfTI-1 image, .nii or .nii.gz (gzip at the fastest level, as nibabel's default),
/// little endian, vox_offset 352, no extensions, no scaling (scl_slope 1, scl_inter 0).
/// <para>
/// The tensor is in <see cref="MedicalVolume"/>'s layout: [y,x], [z,y,x], or [t,z,y,x] and up to 7 axes, slowest first;
/// <c>spacing</c> has one entry (mm) per spatial axis, in the same order. Given an affine (voxel (i along x, j along y,
/// k along z) to world mm, RAS), both the sform and the qform carry it, with code 2 ("aligned", nibabel's code for
/// an image's affine); the qform drops to code 0 when the affine has shears, which a quaternion cannot hold. Without
/// one, both codes are 0 and readers fall back to the spacing. The file appears whole or not at all: it is written
/// to a temporary file beside it, flushed to disk, and renamed.
/// </para>
/// </summary>
public static class NiftiWriter
{
    const int AlignedCode = 2;

    public static void Write(string path, Tensor voxels, double[] spacing, double[,]? affine = null, string description = "")
    {
        bool gz = path.EndsWith(".nii.gz", StringComparison.OrdinalIgnoreCase);
        if (!gz && !path.EndsWith(".nii", StringComparison.OrdinalIgnoreCase))
            throw new ArgumentException($"{path}: NIfTI is written as .nii or .nii.gz", nameof(path));
        var header = HeaderFor(voxels, spacing, affine, description);
        byte[] block = header.EncodeNifti1();
        string full = Path.GetFullPath(path);
        string temp = Path.Combine(Path.GetDirectoryName(full)!, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                var gzip = gz ? new GZipStream(file, CompressionLevel.Fastest, leaveOpen: true) : null;
                using (gzip)
                {
                    Stream stream = (Stream?)gzip ?? file;
                    stream.Write(block);
                    using var cpu = voxels.cpu();
                    using var contiguous = cpu.contiguous();
                    contiguous.WriteBytesToStream(stream, 1 << 20);
                }
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    /// <summary>The header <see cref="Write"/> writes for these arguments.</summary>
    public static NiftiHeader HeaderFor(Tensor voxels, double[] spacing, double[,]? affine = null, string description = "")
    {
        var type = voxels.dtype switch
        {
            ScalarType.Byte => NiftiDatatype.UInt8,
            ScalarType.Int8 => NiftiDatatype.Int8,
            ScalarType.Int16 => NiftiDatatype.Int16,
            ScalarType.Int32 => NiftiDatatype.Int32,
            ScalarType.Int64 => NiftiDatatype.Int64,
            ScalarType.Float32 => NiftiDatatype.Float32,
            ScalarType.Float64 => NiftiDatatype.Float64,
            _ => throw new
                ArgumentException($"tensors of {voxels.dtype} have no NIfTI datatype here (uint8, int8, int16, int32, int64, float32 and float64 do)",
                    nameof(voxels)),
        };
        int rank = (int)voxels.dim();
        if (rank is < 1 or > 7) throw new ArgumentException($"NIfTI holds 1 to 7 axes, not {rank}", nameof(voxels));
        long[] shape = voxels.shape;
        if (shape.Any(n => n is < 1 or > short.MaxValue))
            throw new ArgumentException($"NIfTI-1 extents are 1 to {short.MaxValue}; the tensor is [{string.Join(", ", shape)}]", nameof(voxels));
        int spatial = Math.Min(rank, 3);
        if (spacing.Length != spatial)
            throw new ArgumentException($"spacing has {spacing.Length} entries; a [{string.Join(", ", shape)}] tensor has {spatial} spatial axes",
                nameof(spacing));
        if (spacing.Any(s => !double.IsFinite(s) || s <= 0))
            throw new ArgumentException($"spacing [{string.Join(", ", spacing)}] must be positive and finite", nameof(spacing));

        long[] dim = new long[8];
        dim[0] = rank;
        for (int i = 0; i < 8; i++) if (i > 0) dim[i] = i <= rank ? shape[rank - i] : 1;
        double[] pixdim = [1, 1, 1, 1, 1, 1, 1, 1];
        for (int i = 0; i < spatial; i++) pixdim[i + 1] = spacing[spatial - 1 - i];

        var header = new NiftiHeader
        {
            Version = 1,
            Magic = "n+1",
            Dim = dim,
            Datatype = type.Code,
            Bitpix = type.Bitpix,
            Pixdim = pixdim,
            VoxOffset = NiftiHeader.Nifti1Size + 4,
            SclSlope = 1,
            SclInter = 0,
            XyztUnits = rank >= 4 ? 2 | 8 : 2,  // mm, and seconds when there is a time axis
            Descrip = description,
        };
        if (affine is null) return header;

        CheckAffine(affine, pixdim, spatial);
        for (int i = spatial; i < 3; i++)
        {
            double norm = ColumnNorm(affine, i);
            pixdim[i + 1] = norm > 0 ? norm : 1;
        }
        var (b, c, d, qfac, rigid) = Quaternion(affine);
        pixdim[0] = qfac;
        return header with
        {
            SformCode = AlignedCode,
            SrowX = Row(affine, 0),
            SrowY = Row(affine, 1),
            SrowZ = Row(affine, 2),
            QformCode = rigid ? AlignedCode : 0,
            QuaternB = b,
            QuaternC = c,
            QuaternD = d,
            QoffsetX = affine[0, 3],
            QoffsetY = affine[1, 3],
            QoffsetZ = affine[2, 3],
        };
    }

    static void CheckAffine(double[,] affine, double[] pixdim, int spatial)
    {
        if (affine.GetLength(0) != 4 || affine.GetLength(1) != 4)
            throw new ArgumentException($"the affine is {affine.GetLength(0)}x{affine.GetLength(1)}, not 4x4", nameof(affine));
        foreach (double value in affine)
            if (!double.IsFinite(value)) throw new ArgumentException("the affine holds a non-finite value", nameof(affine));
        if (affine[3, 0] != 0 || affine[3, 1] != 0 || affine[3, 2] != 0 || affine[3, 3] != 1)
            throw new ArgumentException("the affine's last row is not 0 0 0 1", nameof(affine));
        for (int i = 0; i < spatial; i++)
        {
            double norm = ColumnNorm(affine, i), zoom = pixdim[i + 1];
            if (Math.Abs(norm - zoom) > 1e-4 * Math.Max(norm, zoom))
                throw new ArgumentException($"the affine's column {i} has length {norm}, but the spacing along that axis is {zoom}", nameof(affine));
        }
    }

    static double ColumnNorm(double[,] m, int column) =>
        Math.Sqrt(m[0, column] * m[0, column] + m[1, column] * m[1, column] + m[2, column] * m[2, column]);

    static double[] Row(double[,] m, int row) => [m[row, 0], m[row, 1], m[row, 2], m[row, 3]];

    /// <summary>The qform quaternion of an affine, as the NIfTI-1 standard derives it: columns normalised, the nearest
    /// rotation (polar decomposition), qfac -1 when the axes are left-handed. <c>rigid</c>: whether rotation, zooms
    /// and qfac give back the affine, i.e. it has no shear.</summary>
    static (double B, double C, double D, double Qfac, bool Rigid) Quaternion(double[,] affine)
    {
        var m = new double[3, 3];
        for (int c = 0; c < 3; c++)
        {
            double norm = ColumnNorm(affine, c);
            if (norm == 0) return (0, 0, 0, 1, false);
            for (int r = 0; r < 3; r++) m[r, c] = affine[r, c] / norm;
        }
        double qfac = 1;
        if (Determinant(m) < 0)
        {
            qfac = -1;
            for (int r = 0; r < 3; r++) m[r, 2] = -m[r, 2];
        }
        var rotation = NearestRotation(m);
        if (rotation is null) return (0, 0, 0, qfac, false);
        double error = 0;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++)
                error = Math.Max(error, Math.Abs(rotation[r, c] - m[r, c]));
        var (a, b, cq, d) = FromRotation(rotation);
        if (a < 0) (b, cq, d) = (-b, -cq, -d);
        return (b, cq, d, qfac, error < 1e-5);
    }

    /// <summary>The orthogonal factor of <paramref name="m"/>'s polar decomposition (X ← (X + X⁻ᵀ) / 2, which
    /// converges quadratically), or null for a singular matrix.</summary>
    static double[,]? NearestRotation(double[,] m)
    {
        var x = (double[,])m.Clone();
        for (int iteration = 0; iteration < 100; iteration++)
        {
            double det = Determinant(x);
            if (Math.Abs(det) < 1e-12) return null;
            var next = new double[3, 3];
            double change = 0;
            for (int r = 0; r < 3; r++)
                for (int c = 0; c < 3; c++)
                {
                    // (X⁻ᵀ)[r,c] = cofactor(r,c) / det
                    double cofactor = x[(r + 1) % 3, (c + 1) % 3] * x[(r + 2) % 3, (c + 2) % 3]
                                      - x[(r + 1) % 3, (c + 2) % 3] * x[(r + 2) % 3, (c + 1) % 3];
                    next[r, c] = 0.5 * (x[r, c] + cofactor / det);
                    change = Math.Max(change, Math.Abs(next[r, c] - x[r, c]));
                }
            x = next;
            if (change < 1e-15) break;
        }
        return x;
    }

    static double Determinant(double[,] m) =>
        m[0, 0] * (m[1, 1] * m[2, 2] - m[1, 2] * m[2, 1])
        - m[0, 1] * (m[1, 0] * m[2, 2] - m[1, 2] * m[2, 0])
        + m[0, 2] * (m[1, 0] * m[2, 1] - m[1, 1] * m[2, 0]);

    /// <summary>The unit quaternion (a, b, c, d) of a rotation matrix, from its largest diagonal term for accuracy.</summary>
    static (double A, double B, double C, double D) FromRotation(double[,] r)
    {
        double trace = r[0, 0] + r[1, 1] + r[2, 2];
        if (trace > 0)
        {
            double a = 0.5 * Math.Sqrt(trace + 1);
            return (a, 0.25 * (r[2, 1] - r[1, 2]) / a, 0.25 * (r[0, 2] - r[2, 0]) / a, 0.25 * (r[1, 0] - r[0, 1]) / a);
        }
        if (r[0, 0] >= r[1, 1] && r[0, 0] >= r[2, 2])
        {
            double b = 0.5 * Math.Sqrt(1 + r[0, 0] - r[1, 1] - r[2, 2]);
            return (0.25 * (r[2, 1] - r[1, 2]) / b, b, 0.25 * (r[0, 1] + r[1, 0]) / b, 0.25 * (r[0, 2] + r[2, 0]) / b);
        }
        if (r[1, 1] >= r[2, 2])
        {
            double c = 0.5 * Math.Sqrt(1 + r[1, 1] - r[0, 0] - r[2, 2]);
            return (0.25 * (r[0, 2] - r[2, 0]) / c, 0.25 * (r[0, 1] + r[1, 0]) / c, c, 0.25 * (r[1, 2] + r[2, 1]) / c);
        }
        double d = 0.5 * Math.Sqrt(1 + r[2, 2] - r[0, 0] - r[1, 1]);
        return (0.25 * (r[1, 0] - r[0, 1]) / d, 0.25 * (r[0, 2] + r[2, 0]) / d, 0.25 * (r[1, 2] + r[2, 1]) / d, d);
    }
}
