using System.IO.Compression;
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
        try
        {
            using var stream = entry.Open();
            return Npy.Read(stream, Source(name), entry.Length);
        }
        catch (InvalidDataException e) when (!e.Message.StartsWith(Path, StringComparison.Ordinal))
        {
            // A corrupt deflate stream or CRC: zip's own message, named.
            throw new InvalidDataException($"{Source(name)}: {e.Message}", e);
        }
    }

    ZipArchiveEntry Entry(string name) => members.TryGetValue(name, out var entry)
        ? entry
        : throw new KeyNotFoundException($"{Path}: no array '{name}' (it holds {string.Join(", ", Names)})");

    string Source(string name) => $"{Path}:{name}.npy";

    /// <summary>Writes arrays as a .npz: deflated like numpy.savez_compressed, or stored like numpy.savez.</summary>
    public static void Write(string path, IReadOnlyDictionary<string, Tensor> arrays, bool compressed = true)
    {
        string temp = path + $".tmp-{Guid.NewGuid():N}";
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            using (var zip = new ZipArchive(file, ZipArchiveMode.Create))
                foreach (var (name, tensor) in arrays)
                {
                    var entry = zip.CreateEntry(name + ".npy", compressed ? CompressionLevel.Optimal : CompressionLevel.NoCompression);
                    using var stream = entry.Open();
                    Npy.Write(stream, tensor);
                }
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }

    public void Dispose() => archive.Dispose();
}
