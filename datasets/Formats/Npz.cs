using System.IO.Compression;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// A NumPy .npz archive (numpy.savez, stored, or savez_compressed, deflated): named .npy members in a zip.
/// </summary>
public sealed class Npz : IDisposable
{
    readonly ZipArchive archive;
    readonly Dictionary<string, ZipArchiveEntry> members;

    public string Path { get; }
    public IReadOnlyList<string> Names { get; }

    Npz(string path, ZipArchive archive)
    {
        Path = path;
        this.archive = archive;
        members = [];
        foreach (var entry in archive.Entries)
        {
            if (!entry.FullName.EndsWith(".npy", StringComparison.Ordinal)) continue;
            members[entry.FullName[..^4]] = entry;
        }
        Names = [.. members.Keys.Order(StringComparer.Ordinal)];
    }

    public static Npz Open(string path)
    {
        FileStream stream;
        try
        {
            stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        }
        catch (FileNotFoundException)
        {
            throw new FileNotFoundException($"{path}: no such file", path);
        }
        try
        {
            return new Npz(path, new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false));
        }
        catch (InvalidDataException e)
        {
            stream.Dispose();
            throw new InvalidDataException($"{path}: not a .npz (zip) archive: {e.Message}", e);
        }
    }

    public bool Contains(string name) => members.ContainsKey(name);

    public NpyHeader Header(string name)
    {
        using var stream = Entry(name).Open();
        return NpyHeader.Read(stream, Source(name));
    }

    /// <summary>The member's array as a tensor the caller owns.</summary>
    public Tensor Read(string name)
    {
        var entry = Entry(name);
        string source = Source(name);
        try
        {
            using var stream = entry.Open();
            var header = NpyHeader.Read(stream, source);
            CheckDeclared(source, header, entry.Length, entry.CompressedLength);
            var array = Npy.ReadData(stream, header, source);
            // The member must end with its array: bytes past it are a lie about its size (or a bomb's tail).
            if (stream.ReadByte() >= 0)
            {
                array.Dispose();
                throw NpyHeader.Bad(source, $"inflates past the {header.DataLength} bytes its array declares");
            }
            return array;
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(Path, StringComparison.Ordinal))
        {
            // A corrupt deflate stream or CRC: zip's own message, named.
            throw new InvalidDataException($"{Source(name)}: {e.Message}", e);
        }
    }

    /// <summary>
    /// Refuses, before anything is allocated, a member whose array needs more bytes than the zip entry states, whose
    /// entry states more than its array needs, whose compressed bytes hold more than it states (the zip reader would
    /// silently cut them off), or whose compressed bytes could not inflate to it (deflate: 1032:1 at most; a stored member holds as many as it states).
    /// </summary>
    internal static void CheckDeclared(string source, NpyHeader header, long size, long compressedSize)
    {
        long room = size - header.DataOffset;
        if (header.DataLength > room)
            throw NpyHeader.Bad(source,
                $"truncated: the header needs {header.DataLength} bytes of {header.Dtype} [{string.Join(", ", header.Shape)}] " +
                    $"but the member holds {room} after it");
        if (header.DataLength < room)
            throw NpyHeader.Bad(source, $"the zip entry states {size} bytes but its array needs {header.DataOffset + header.DataLength}");
        if (compressedSize > Inflation.MaxCompressed(size))
            throw NpyHeader.Bad(source, $"inflates past the {size} bytes its zip entry states: {compressedSize} compressed bytes hold more");
        if (!Inflation.CanHold(compressedSize, size))
            throw NpyHeader.Bad(source, $"{compressedSize} deflated bytes cannot inflate to the {size} its zip entry states (1032:1 at most)");
    }

    ZipArchiveEntry Entry(string name) => members.TryGetValue(name, out var entry)
        ? entry
        : throw new KeyNotFoundException($"{Path}: no array '{name}' (it holds {string.Join(", ", Names)})");

    string Source(string name) => $"{Path}:{name}.npy";

    static readonly DateTimeOffset ZipEpoch = new(1980, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Writes arrays as a .npz: deflated like numpy.savez_compressed, or stored like numpy.savez.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> arrays, bool compressed = true) => AtomicFile.Write(path, file =>
    {
        using var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true);
        foreach (var (name, tensor) in arrays)
        {
            var entry = zip.CreateEntry(name + ".npy", compressed ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
            // A fixed member time (zip's epoch): the same arrays give the same bytes whenever they are written, so
            // processes that write one file at once agree, and digests of generated files are stable.
            entry.LastWriteTime = ZipEpoch;
            using var stream = entry.Open();
            Npy.Write(stream, tensor);
        }
    });

    public void Dispose() => archive.Dispose();
}
