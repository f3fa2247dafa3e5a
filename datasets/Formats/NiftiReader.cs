using System.Buffers.Binary;
using System.IO.Compression;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Reads NIfTI-1 and NIfTI-2 images, single file (.nii, .nii.gz) or pair (.hdr/.img, .hdr.gz/.img.gz), either byte
/// order, and Analyze 7.5 pairs (a .hdr without the NIfTI magic: read as nibabel reads it, with the affine from
/// pixdim and SPM's origin, and SPM's scale factor). Gzip is recognised by its magic bytes, whatever the name.
/// <para>
/// Voxels come out as <see cref="MedicalVolume"/> says: the stored x-fastest array of extents [x,y,z,t,...] becomes a
/// tensor [...,t,z,y,x]; RGB24 / RGBA32 become uint8 with a leading channel axis [3 or 4,...,z,y,x]. uint16 and
/// uint32 widen to int32 and int64 (libtorch lacks them); uint64 stays int64 and values above 2^63 - 1 are refused.
/// scl_slope/scl_inter apply as in nibabel, giving float32. Complex, float128 and binary data are refused with
/// <see cref="NotSupportedException"/>; malformed files with <see cref="InvalidDataException"/>, both naming the file.
/// </para>
/// </summary>
public static class NiftiReader
{
    const long MaxDeflateRatio = Inflation.MaxRatio;

    public static MedicalVolume Read(string path)
    {
        var files = NiftiFiles.Resolve(path);
        files.CheckPartner(path);
        using var headerFile = Open(files.Header);
        var header = ReadHeader(headerFile, files, out long position);
        var type = header.DataType;
        if (!type.IsSupported)
            throw new NotSupportedException($"{files.Header}: datatype {type} is not supported (libtorch has no such dtype here)");
        if (header.Scaling is { } scaling && !double.IsFinite(scaling.Inter))
            throw NiftiHeader.Bad(files.Header, $"scl_slope {scaling.Slope} applies but scl_inter is {scaling.Inter}");

        long offset = header.DataOffset(files.Single, files.Header);
        Tensor voxels;
        if (files.Single)
        {
            voxels = ReadVoxels(headerFile, header, offset, position, files.Header);
        }
        else
        {
            using var dataFile = Open(files.Data);
            voxels = ReadVoxels(dataFile, header, offset, 0, files.Data);
        }
        using (voxels)
        {
            return new MedicalVolume(
                Finish(voxels, header, files.Data),
                Spacing(header),
                Affine(header),
                "RAS",
                type.Name,
                path,
                [new("file", path), .. header.ToKeyValues()]);
        }
    }

    /// <summary>The header alone (and, for a single file, its extension list): cheap, for inspection. Checks the
    /// header's own consistency, not that the data is there or of a supported type.</summary>
    public static NiftiHeader ReadHeader(string path)
    {
        var files = NiftiFiles.Resolve(path);
        if (path == files.Data) files.CheckPartner(path);
        using var file = Open(files.Header);
        return ReadHeader(file, files, out _);
    }

    /// <summary>The header, and for a single file its extensions; <paramref name="position"/>: the bytes read.</summary>
    static NiftiHeader ReadHeader(OpenFile file, NiftiFiles files, out long position)
    {
        var header = Wrap(files.Header, () => NiftiHeader.Read(file.Stream, files.Header, allowAnalyze: !files.Single));
        position = header.HeaderSize;
        if (!files.Single) return header;
        long offset = header.DataOffset(singleFile: true, files.Header);
        var (extensions, end) = Wrap(files.Header, () => ReadExtensions(file.Stream, header, offset));
        position = end;
        return header with { Extensions = extensions };
    }

    /// <summary>The extension list after a single file's header, up to vox_offset. Damaged lists end the listing
    /// rather than the read: nothing in them affects the voxels.</summary>
    static (List<NiftiExtension> Extensions, long Position) ReadExtensions(Stream stream, NiftiHeader header, long offset)
    {
        var list = new List<NiftiExtension>();
        long position = header.HeaderSize;
        if (offset < position + 4) return (list, position);
        Span<byte> flag = stackalloc byte[8];
        if (!TryRead(stream, flag[..4])) return (list, offset);  // the data check reports the missing bytes
        position += 4;
        if (flag[0] == 0) return (list, position);
        while (position + 8 <= offset)
        {
            if (!TryRead(stream, flag)) return (list, offset);
            position += 8;
            int size = header.BigEndian ? BinaryPrimitives.ReadInt32BigEndian(flag) : BinaryPrimitives.ReadInt32LittleEndian(flag);
            int code = header.BigEndian ? BinaryPrimitives.ReadInt32BigEndian(flag[4..]) : BinaryPrimitives.ReadInt32LittleEndian(flag[4..]);
            if (size < 8 || size % 16 != 0 || position - 8 + size > offset) break;
            list.Add(new NiftiExtension(code, size));
            if (!Skip(stream, size - 8)) return (list, offset);
            position += size - 8;
        }
        return (list, position);
    }

    static Tensor ReadVoxels(OpenFile file, NiftiHeader header, long offset, long position, string source)
    {
        var type = header.DataType;
        long length = header.DataBytes;
        if (file.Compressed)
        {
            if (offset > file.Length * MaxDeflateRatio || length > file.Length * MaxDeflateRatio - offset)
                throw NiftiHeader.Bad(source,
                    $"truncated: the header claims {length} bytes of voxels at offset {offset}, more than a {file.Length}-byte gzip file can hold");
        }
        else
        {
            if (offset > file.Length)
                throw NiftiHeader.Bad(source, $"vox_offset {offset} is beyond the end of the file ({file.Length} bytes)");
            if (length > file.Length - offset)
                throw NiftiHeader.Bad(source,
                    $"truncated: the header claims {length} bytes of {type.Name} [{string.Join(", ", header.Shape)}] at offset {offset} but the file " +
                        $"has {file.Length - offset} bytes there");
        }
        if (offset < position)
            throw NiftiHeader.Bad(source, $"vox_offset {offset} lies inside the header");
        if (!Wrap(source, () => Skip(file.Stream, offset - position)))
            throw NiftiHeader.Bad(source, $"vox_offset {offset} is beyond the end of the decompressed data");

        long[] shape = header.Shape.Reverse().ToArray();
        if (type.Channels > 1) shape = [.. shape, type.Channels];
        var raw = empty(shape, dtype: type.Storage!.Value);
        try
        {
            Wrap(source, () => RawData.Fill(file.Stream, raw, header.BigEndian, type.ItemSize,
                () => NiftiHeader.Bad(source, $"truncated: the voxel data ends before its {length} bytes")));
            return raw;
        }
        catch
        {
            raw.Dispose();
            throw;
        }
    }

    /// <summary>Unsigned types widened, RGB channels moved first, scaling applied: the tensor the caller gets.</summary>
    static Tensor Finish(Tensor raw, NiftiHeader header, string source)
    {
        var type = header.DataType;
        using var scope = NewDisposeScope();
        Tensor result = type.Code switch
        {
            512 => raw.to(ScalarType.Int32).bitwise_and_(0xFFFF),
            768 => raw.to(ScalarType.Int64).bitwise_and_(0xFFFFFFFFL),
            1280 => NonNegative(raw, source),
            _ => raw.alias(),
        };
        if (type.Channels > 1)
            return scope.MoveToOuter(result.permute([result.dim() - 1, .. Enumerable.Range(0, (int)result.dim() - 1).Select(i => (long)i)]).contiguous());
        if (header.Scaling is { } scaling)
        {
            // float64 arithmetic where float32 cannot hold the stored values exactly; a slab at a time, so the
            // float64 copy is never of the whole volume.
            var work = type.ItemSize >= 4 && type.Code != 16 ? ScalarType.Float64 : ScalarType.Float32;
            var scaled = empty(result.shape, dtype: ScalarType.Float32);
            using var from = result.view(-1);
            using var to = scaled.view(-1);
            for (long start = 0, count = from.shape[0]; start < count; start += VoxelStatistics.SlabLength)
            {
                using var slab = NewDisposeScope();
                long n = Math.Min(VoxelStatistics.SlabLength, count - start);
                to.narrow(0, start, n).copy_(from.narrow(0, start, n).to(work).mul_(scaling.Slope).add_(scaling.Inter));
            }
            result = scaled;
        }
        return scope.MoveToOuter(result);
    }

    static Tensor NonNegative(Tensor values, string source)
    {
        if (values.numel() > 0 && values.min().item<long>() < 0)
            throw new NotSupportedException($"{source}: uint64 voxels above 2^63 - 1, which no libtorch dtype holds");
        return values.alias();
    }

    /// <summary>Spacing in the tensor's axis order (z, y, x for a volume), in mm.</summary>
    static double[] Spacing(NiftiHeader header)
    {
        var zooms = header.Zooms;
        int spatial = Math.Min(header.NDim, 3);
        return Enumerable.Range(0, spatial).Select(i => zooms[spatial - 1 - i] * header.SpatialUnitInMm).ToArray();
    }

    static double[,] Affine(NiftiHeader header)
    {
        var affine = header.BestAffine;
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 4; c++)
                affine[r, c] *= header.SpatialUnitInMm;
        return affine;
    }

    static bool TryRead(Stream stream, Span<byte> buffer)
    {
        try
        {
            stream.ReadExactly(buffer);
            return true;
        }
        catch (EndOfStreamException)
        {
            return false;
        }
    }

    /// <summary>Reads past <paramref name="count"/> bytes (a gzip stream cannot seek); false at the end of the data.</summary>
    static bool Skip(Stream stream, long count)
    {
        if (count <= 0) return true;
        if (stream.CanSeek)
        {
            if (stream.Position + count > stream.Length) return false;
            stream.Seek(count, SeekOrigin.Current);
            return true;
        }
        var buffer = new byte[(int)Math.Min(count, 1 << 16)];
        while (count > 0)
        {
            int read = stream.Read(buffer, 0, (int)Math.Min(count, buffer.Length));
            if (read == 0) return false;
            count -= read;
        }
        return true;
    }

    /// <summary>A corrupt gzip stream surfaces as the decompressor's InvalidDataException: name the file.</summary>
    static T Wrap<T>(string source, Func<T> read)
    {
        try
        {
            return read();
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(source, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: corrupt gzip stream: {e.Message}", e);
        }
    }

    static void Wrap(string source, Action read) => Wrap(source, () => { read(); return true; });

    static OpenFile Open(string path)
    {
        FileStream file;
        try
        {
            file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path);
        }
        Span<byte> magic = stackalloc byte[2];
        int read = file.Read(magic);
        file.Position = 0;
        if (read == 2 && magic[0] == 0x1F && magic[1] == 0x8B)
            return new OpenFile(new GZipStream(file, CompressionMode.Decompress, leaveOpen: false), true, file.Length);
        return new OpenFile(file, false, file.Length);
    }

    /// <summary>A file opened for reading, through gzip when it starts with gzip's magic; Length is the file's.</summary>
    sealed record OpenFile(Stream Stream, bool Compressed, long Length) : IDisposable
    {
        public void Dispose() => Stream.Dispose();
    }
}
