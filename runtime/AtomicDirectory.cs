namespace Medformer.Runtime;

/// <summary>
/// Writes a folder whole or not at all: the content goes to a hidden sibling, every file is fsynced, and a rename
/// puts it in place. An existing folder is moved aside first and removed only after the new one is in place, so
/// <see cref="Write"/> is for folders the program owns whole (a command's --out goes through <see cref="OutputFolder"/>);
/// <see cref="WriteInto"/> adds files to a folder and removes nothing.
/// </summary>
public static class AtomicDirectory
{
    public static void Write(string directory, Action<string> writeContents)
    {
        var (full, parent, staging) = Stage(directory, writeContents);
        try
        {
            string? aside = null;
            if (Directory.Exists(full))
            {
                aside = Path.Combine(parent, $".{Path.GetFileName(full)}.old-{Guid.NewGuid():N}");
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

    /// <summary>
    /// Writes the files into <paramref name="directory"/> beside what is there: each file is staged, fsynced and
    /// renamed in (replacing a file of the same name only); nothing else in the folder is touched.
    /// </summary>
    public static void WriteInto(string directory, Action<string> writeContents)
    {
        var (full, _, staging) = Stage(directory, writeContents);
        try
        {
            Directory.CreateDirectory(full);
            foreach (string file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
            {
                string target = Path.Combine(full, Path.GetRelativePath(staging, file));
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                File.Move(file, target, overwrite: true);
            }
            FsyncDirectory(full);
        }
        finally
        {
            // Only the staging folder, which this call made; what it held has moved in.
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        }
    }

    /// <summary>The contents written and fsynced in a hidden sibling of <paramref name="directory"/>.</summary>
    static (string Full, string Parent, string Staging) Stage(string directory, Action<string> writeContents)
    {
        string full = Path.GetFullPath(directory).TrimEnd(Path.DirectorySeparatorChar);
        string parent = Path.GetDirectoryName(full) ?? throw new ArgumentException($"{directory}: no parent folder");
        Directory.CreateDirectory(parent);
        string staging = Path.Combine(parent, $".{Path.GetFileName(full)}.tmp-{Guid.NewGuid():N}");
        Directory.CreateDirectory(staging);
        try
        {
            writeContents(staging);
            foreach (string file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
            {
                using var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite);
                stream.Flush(flushToDisk: true);
            }
            return (full, parent, staging);
        }
        catch
        {
            Directory.Delete(staging, recursive: true);
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
