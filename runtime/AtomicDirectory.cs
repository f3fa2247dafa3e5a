namespace Medformer.Runtime;

/// <summary>
/// Writes a folder whole or not at all: the content goes to a hidden sibling, every file is fsynced, and a rename
/// puts it in place. An existing folder is moved aside first and removed only after the new one is in place.
/// </summary>
public static class AtomicDirectory
{
    public static void Write(string directory, Action<string> writeContents)
    {
        string full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"{directory}: no parent folder");
        Directory.CreateDirectory(parent);
        string name = Path.GetFileName(full);
        string staging = Path.Combine(parent, $".{name}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            writeContents(staging);
            foreach (string file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }
            string? aside = null;
            if (Directory.Exists(full))
            {
                aside = Path.Combine(parent, $".{name}.old-{Guid.NewGuid():N}");
                Directory.Move(full, aside);
            }
            Directory.Move(staging, full);
            FsyncDirectory(parent);
            if (aside != null) Directory.Delete(aside, recursive: true);
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            throw;
        }
    }

    /// <summary>Makes a rename in <paramref name="path"/> durable; best effort where the folder cannot be opened.</summary>
    public static void FsyncDirectory(string path)
    {
        // Makes the rename itself durable; .NET has no API for a directory fsync, and Linux allows opening one read-only.
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            RandomAccess.FlushToDisk(handle);
        }
        catch (UnauthorizedAccessException) { }
        catch (IOException) { }
    }
}
