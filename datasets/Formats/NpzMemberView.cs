using System.IO.Compression;
using System.IO.MemoryMappedFiles;

namespace Medformer.Datasets.Formats;

/// <summary>
/// Random access to the raw data of one .npz member, for readers that slice one sample at a time from many threads.
/// A stored member (numpy.savez) is memory-mapped in place; a deflated one (numpy.savez_compressed) is inflated
/// into memory when it is at most <c>inMemoryLimit</c> bytes, else once into an uncompressed .npy under
/// <c>unpackDirectory</c>, which is then mapped (numpy cannot map an .npz member at all). Reads are thread-safe;
/// <see cref="Dispose"/> waits for none but makes later reads fail with <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed unsafe class NpzMemberView : IDisposable
{
    readonly byte[]? memory;
    readonly MemoryMappedFile? map;
    readonly MemoryMappedViewAccessor? view;
    volatile bool disposed;

    public NpyHeader Header { get; }

    /// <summary>"FILE.npz:NAME.npy", for messages.</summary>
    public string Source { get; }

    /// <summary>How the data is held: "mapped" (stored member), "memory" (inflated), "unpacked" (inflated to a file, mapped).</summary>
    public string Backing { get; }

    public long Length => Header.DataLength;

    NpzMemberView(NpyHeader header, string source, string backing, byte[]? memory, MemoryMappedFile? map, MemoryMappedViewAccessor? view)
    {
        Header = header;
        Source = source;
        Backing = backing;
        this.memory = memory;
        this.map = map;
        this.view = view;
    }

    public static NpzMemberView Open(string npzPath, string name, long inMemoryLimit, string unpackDirectory)
    {
        var members = ZipDirectory.Read(npzPath);
        var member = members.FirstOrDefault(m => m.Name == name + ".npy")
            ?? throw new
                KeyNotFoundException($"{npzPath}: no array '{name}' (it holds " +
                    $"{string.Join(", ", members.Select(m => m.Name.EndsWith(".npy", StringComparison.Ordinal) ? m.Name[..^4] : m.Name))})");
        string source = $"{npzPath}:{name}.npy";
        if (member.IsStored) return Mapped(npzPath, member.DataOffset, member.Size, source, "mapped");
        if (member.Method != 8) throw new NotSupportedException($"{source}: zip compression method {member.Method} is not supported (stored and deflated are)");
        if (!Inflation.CanHold(member.CompressedSize, member.Size))
            throw new InvalidDataException($"{source}: {member.CompressedSize} deflated bytes cannot inflate to the {member.Size} " +
                "its zip entry states (1032:1 at most)");
        return member.Size <= Math.Min(inMemoryLimit, Array.MaxLength)
            ? Inflated(npzPath, member, source)
            : Mapped(Unpack(npzPath, member, unpackDirectory, source), 0, null, source, "unpacked");
    }

    /// <summary>Copies the data bytes [offset, offset + destination.Length) into <paramref name="destination"/>.</summary>
    public void CopyTo(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset + destination.Length > Length)
            throw new ArgumentOutOfRangeException(nameof(offset),
                $"{Source}: bytes [{offset}, {offset + destination.Length}) lie outside its {Length} bytes of data");
        ObjectDisposedException.ThrowIf(disposed, this);
        if (memory != null)
        {
            memory.AsSpan(checked((int)offset), destination.Length).CopyTo(destination);
            return;
        }
        if (destination.Length == 0) return;
        var handle = view!.SafeMemoryMappedViewHandle;
        byte* pointer = null;
        // Acquire/Release count references, so a concurrent Dispose cannot unmap the view under this copy.
        handle.AcquirePointer(ref pointer);
        try
        {
            new ReadOnlySpan<byte>(pointer + view.PointerOffset + offset, destination.Length).CopyTo(destination);
        }
        finally
        {
            handle.ReleasePointer();
        }
    }

    static NpzMemberView Mapped(string path, long start, long? available, string source, string backing)
    {
        NpyHeader header;
        long fileLength;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 12))
        {
            fileLength = file.Length;
            file.Position = start;
            header = NpyHeader.Read(file, source);
        }
        long room = (available ?? fileLength - start) - header.DataOffset;
        if (header.DataLength > room)
            throw new InvalidDataException($"{source}: truncated: the header needs {header.DataLength} bytes of {header.Dtype} " +
                $"[{string.Join(", ", header.Shape)}] but {room} follow it");
        if (header.DataLength == 0) return new NpzMemberView(header, source, backing, [], null, null);
        var map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        try
        {
            var view = map.CreateViewAccessor(start + header.DataOffset, header.DataLength, MemoryMappedFileAccess.Read);
            return new NpzMemberView(header, source, backing, null, map, view);
        }
        catch
        {
            map.Dispose();
            throw;
        }
    }

    static NpzMemberView Inflated(string path, ZipMember member, string source)
    {
        using var zip = ZipFile.OpenRead(path);
        var entry = zip.GetEntry(member.Name) ?? throw new InvalidDataException($"{source}: the zip directory lists it but the archive does not open it");
        try
        {
            using var stream = entry.Open();
            var header = NpyHeader.Read(stream, source);
            // The zip's claimed size bounds the allocation (and the caller's limit bounds that).
            if (header.DataLength > member.Size - header.DataOffset)
                throw new InvalidDataException($"{source}: truncated: the header needs {header.DataLength} bytes but the member holds " +
                    $"{member.Size - header.DataOffset} after it");
            var data = GC.AllocateUninitializedArray<byte>(checked((int)header.DataLength));
            try
            {
                stream.ReadExactly(data);
            }
            catch (EndOfStreamException)
            {
                throw new InvalidDataException($"{source}: truncated: the data ends before byte {header.DataLength}");
            }
            return new NpzMemberView(header, source, "memory", data, null, null);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
        }
    }

    // One uncompressed copy per archive version (name, length, modification time), written atomically.
    static string Unpack(string path, ZipMember member, string unpackDirectory, string source)
    {
        var info = new FileInfo(path);
        string folder = System.IO.Path.Combine(unpackDirectory, $"{info.Name}-{info.Length}-{info.LastWriteTimeUtc.Ticks}");
        string target = System.IO.Path.Combine(folder, member.Name);
        if (File.Exists(target) && new FileInfo(target).Length == member.Size) return target;
        Directory.CreateDirectory(folder);
        string temp = target + $".tmp-{Guid.NewGuid():N}";
        try
        {
            using (var zip = ZipFile.OpenRead(path))
            using (var input = (zip.GetEntry(member.Name) ?? throw new InvalidDataException($"{source}: the archive does not open it")).Open())
            using (var output = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                // Never more than the directory claims: a lying entry must not fill the disk.
                var buffer = new byte[1 << 20];
                long written = 0;
                int read;
                while ((read = input.Read(buffer)) > 0)
                {
                    written += read;
                    if (written > member.Size) throw new InvalidDataException($"{source}: inflates past the {member.Size} bytes its zip entry states");
                    output.Write(buffer, 0, read);
                }
                if (written != member.Size)
                    throw new InvalidDataException($"{source}: inflates to {written} bytes, not the {member.Size} its zip entry states");
                output.Flush(flushToDisk: true);
            }
            File.Move(temp, target, overwrite: true);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(path, StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{source}: {e.Message}", e);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
        return target;
    }

    public void Dispose()
    {
        disposed = true;
        view?.Dispose();
        map?.Dispose();
    }
}
