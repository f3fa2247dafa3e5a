using System.Runtime.InteropServices;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// An open safetensors file (like Python's <c>safe_open</c>): the header is read and validated on <see cref="Open"/>,
/// and the whole file is memory-mapped copy-on-write, so reading a tensor costs no I/O up front and writing into
/// one never changes the file.
/// </summary>
/// <remarks>
/// <see cref="GetTensor"/> returns a view of the mapping (no copy) when the tensor's data starts at an offset
/// aligned for its element type, which holds for every file this library writes; otherwise it copies. The mapping is
/// libtorch's own (<c>torch.from_file</c>) and reference-counted with its storage, so a view stays valid after this
/// object is disposed, until the view itself is. Views of one open file share memory: writing into one in place
/// changes what later reads of the same bytes return (never the file on disk). The file must not be truncated in
/// place while mapped (that would fault on access, as with any mapping); replacing it by rename, as Safetensors.Save
/// does, is safe.
/// </remarks>
public sealed class SafetensorsFile : IDisposable
{
    readonly Tensor file;
    readonly SafetensorsHeader header;
    readonly Dictionary<string, SafetensorsTensorInfo> byName;
    bool disposed;

    SafetensorsFile(string path, Tensor file, long length, long dataStart, SafetensorsHeader header)
    {
        Path = path;
        this.file = file;
        Length = length;
        DataStart = dataStart;
        this.header = header;
        byName = header.Tensors.ToDictionary(t => t.Name, StringComparer.Ordinal);
        Names = header.Tensors.Select(t => t.Name).ToArray();
    }

    /// <summary>The path as given to <see cref="Open"/>.</summary>
    public string Path { get; }

    /// <summary>The file's size in bytes.</summary>
    public long Length { get; }

    /// <summary>Where the data buffer starts in the file: 8 + the header's length. Offsets in the header count from here.</summary>
    public long DataStart { get; }

    /// <summary>The header's <c>__metadata__</c>, or null when it has none.</summary>
    public IReadOnlyDictionary<string, string>? Metadata => header.Metadata;

    /// <summary>Every tensor's name, in the order of their data in the file.</summary>
    public IReadOnlyList<string> Names { get; }

    /// <summary>Every tensor's entry, in the order of their data in the file.</summary>
    public IReadOnlyList<SafetensorsTensorInfo> Tensors => header.Tensors;

    public bool Contains(string name) => byName.ContainsKey(name);

    /// <summary>Maps <paramref name="path"/> and validates its header; a malformed file throws <see cref="SafetensorsException"/>.</summary>
    public static SafetensorsFile Open(string path)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("safetensors data is little-endian; this machine is not.");
        TorchRuntime.EnsureLoaded();
        var info = new FileInfo(path);
        if (!info.Exists) throw new SafetensorsException(path, Directory.Exists(path) ? "is a directory, not a file" : "no such file");
        long length = info.Length;
        if (length < 8)
            throw new SafetensorsException(path, $"file is {length} bytes, shorter than the 8-byte header length field");

        Tensor mapped;
        try
        {
            // libtorch checks the file still holds `length` bytes, so a file that shrank since the stat is refused, not mapped past its end.
            mapped = torch.from_file(info.FullName, shared: false, size: length, dtype: ScalarType.Byte);
        }
        catch (ExternalException e)
        {
            throw new SafetensorsException(path, $"cannot map the file: {e.Message.Split('\n')[0]}", e);
        }
        mapped.DetachFromDisposeScope();
        try
        {
            // Everything is validated from the mapping itself, so what was checked is what is read.
            int headerLength = SafetensorsHeader.CheckLength(Bytes(mapped, 0, 8), length, path);
            byte[] headerBytes = Bytes(mapped, 8, headerLength).ToArray();
            long dataStart = 8L + headerLength;
            var header = SafetensorsHeader.Parse(headerBytes, length - dataStart, path);
            return new SafetensorsFile(path, mapped, length, dataStart, header);
        }
        catch
        {
            mapped.Dispose();
            throw;
        }
    }

    /// <summary>A tensor's header entry; a name not in the file throws <see cref="SafetensorsException"/>.</summary>
    public SafetensorsTensorInfo Info(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return byName.TryGetValue(name, out var info) ? info : throw new SafetensorsException(Path, $"no tensor {SafetensorsHeader.Quote(name)} in the file");
    }

    /// <summary>Whether <see cref="GetTensor"/> returns a view of the mapping for this tensor rather than a copy.</summary>
    public bool IsZeroCopy(string name)
    {
        var info = Info(name);
        return info.Dtype.IsTorchType && info.ByteLength > 0 && (DataStart + info.Begin) % info.Dtype.ByteSize == 0;
    }

    /// <summary>
    /// The tensor, on the CPU, with its own dtype and shape; the caller owns (disposes) it. A view of the mapping
    /// when <see cref="IsZeroCopy"/>, else a copy. Types TorchSharp lacks (F8_*, U16/U32/U64, F4, F6_*) throw
    /// <see cref="SafetensorsException"/>: read those with <see cref="GetBytes"/> or <see cref="GetRawTensor"/>.
    /// </summary>
    public Tensor GetTensor(string name)
    {
        ThrowIfDisposed();
        var info = Info(name);
        if (info.Dtype.ScalarType is not ScalarType type)
            throw new SafetensorsException(Path,
                $"tensor {SafetensorsHeader.Quote(name)} is {info.Dtype.Name}, which TorchSharp has no tensor type for; read " +
                    "its bytes with GetBytes or GetRawTensor");
        long[] shape = [.. info.Shape];
        if (info.ByteLength == 0) return torch.empty(shape, dtype: type);

        using var scope = torch.NewDisposeScope();
        long offset = DataStart + info.Begin;
        Tensor bytes = file.narrow(0, offset, info.ByteLength);
        if (type == ScalarType.Bool) CheckBooleans(bytes, name);
        int size = info.Dtype.ByteSize;
        // A typed alias of a byte storage: set_ keeps the tensor's dtype, then as_strided places the view, in
        // elements of that dtype, checked by libtorch against the storage's size.
        Tensor storage;
        long storageOffset;
        if (offset % size == 0)
        {
            storage = file;
            storageOffset = offset / size;
        }
        else
        {
            storage = bytes.clone();
            storageOffset = 0;
        }
        using var anchor = storage.narrow(0, 0, 0);
        Tensor typed = torch.empty([0], dtype: type).set_(anchor);
        Tensor view = typed.as_strided(shape, ContiguousStrides(shape), storageOffset);
        return scope.MoveToOuter(view);
    }

    /// <summary>The tensor's bytes as a 1-D uint8 tensor (a view of the mapping, any dtype); the caller owns it.</summary>
    public Tensor GetRawTensor(string name)
    {
        ThrowIfDisposed();
        var info = Info(name);
        return info.ByteLength == 0 ? torch.empty([0], dtype: ScalarType.Byte) : file.narrow(0, DataStart + info.Begin, info.ByteLength);
    }

    /// <summary>The tensor's bytes, little-endian as stored. Valid only until this file is disposed.</summary>
    public ReadOnlySpan<byte> GetBytes(string name)
    {
        ThrowIfDisposed();
        var info = Info(name);
        if (info.ByteLength > int.MaxValue)
            throw new SafetensorsException(Path,
                $"tensor {SafetensorsHeader.Quote(name)} is {info.ByteLength} bytes, more than a span can hold; use GetRawTensor");
        return Bytes(file, DataStart + info.Begin, (int)info.ByteLength);
    }

    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        file.Dispose();
    }

    void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(disposed, this);

    /// <summary>torch's bool is one byte that must be 0 or 1; any other value would be undefined behaviour.</summary>
    void CheckBooleans(Tensor bytes, string name)
    {
        using var bad = bytes.gt(1);
        using var any = bad.any();
        if (!any.item<bool>()) return;
        using var flags = bad.to_type(ScalarType.Byte);
        using var first = flags.argmax();
        throw new SafetensorsException(Path,
            $"tensor {SafetensorsHeader.Quote(name)}: BOOL element {first.item<long>()} is byte {bytes[first].item<byte>()}, neither 0 nor 1");
    }

    static long[] ContiguousStrides(long[] shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= Math.Max(shape[i], 1);
        }
        return strides;
    }

    /// <summary>A span over part of the mapping; its memory is the storage's, so the temporary view can go at once.</summary>
    static Span<byte> Bytes(Tensor file, long offset, int count)
    {
        if (count == 0) return [];
        using var view = file.narrow(0, offset, count);
        return view.bytes;
    }
}
