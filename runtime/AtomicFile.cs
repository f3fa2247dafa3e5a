using System.Text;

namespace Medformer.Runtime;

/// <summary>
/// A file written whole or not at all: a hidden sibling with a unique name (so two writers never share one),
/// flushed to disk, renamed over the target, and the folder fsynced so the rename itself survives a crash.
/// </summary>
public static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, stream => stream.Write(Encoding.UTF8.GetBytes(text)));

    public static void Copy(string source, string path) => Write(path, stream =>
    {
        using var input = File.OpenRead(source);
        input.CopyTo(stream);
    });

    /// <summary>Writes <paramref name="path"/> through <paramref name="write"/>; on failure the target is untouched and the sibling removed.</summary>
    public static void Write(string path, Action<FileStream> write)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                write(stream);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch
        {
            File.Delete(temporary);
            throw;
        }
        AtomicDirectory.FsyncDirectory(directory);
    }
}
