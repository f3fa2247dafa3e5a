using System.Text;

namespace Medformer.Tracking;

/// <summary>A file written whole or not at all: a hidden sibling, flushed to disk, then renamed over the target.</summary>
static class AtomicFile
{
    public static void WriteAllText(string path, string text) => Write(path, stream => stream.Write(Encoding.UTF8.GetBytes(text)));

    public static void Copy(string source, string path) => Write(path, stream =>
    {
        using var input = File.OpenRead(source);
        input.CopyTo(stream);
    });

    static void Write(string path, Action<FileStream> write)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        string temporary = Path.Combine(directory, $".{Path.GetFileName(path)}.tmp-{Guid.NewGuid():N}");
        try
        {
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
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
    }
}
