using System.Text.Json;
using System.Text.Json.Nodes;

namespace Medformer.Runtime;

/// <summary>
/// A command's output folder (<c>--out</c>), and the one policy for it: a command never removes or replaces what it
/// did not write. The command marks the folders it writes with <see cref="MarkerFile"/> (its name, whether the
/// folder is all its own); <see cref="Claim"/> accepts a folder that is missing, empty or that command's earlier
/// output, and refuses anything else unless forced; with force the command adds its files and removes nothing.
/// The working folder, its ancestors, the home folder and <c>/</c> are refused even with force.
/// </summary>
public sealed class OutputFolder
{
    /// <summary>The marker: <c>{"command": "export", "version": 1, "exclusive": true}</c>.</summary>
    public const string MarkerFile = ".medformer-output.json";

    const int Version = 1;

    OutputFolder(string path, string command, bool exclusive)
    {
        FullPath = path;
        Command = command;
        Exclusive = exclusive;
    }

    public string FullPath { get; }

    public string Command { get; }

    /// <summary>
    /// Whether everything in the folder is the command's own: it was missing or empty, or an earlier run of the
    /// command created it. Only then may the command replace it whole; otherwise it only adds files.
    /// </summary>
    public bool Exclusive { get; }

    /// <summary>
    /// Checks <paramref name="path"/> as <paramref name="command"/>'s --out and writes nothing, so a refusal leaves
    /// the folder as it was. A refusal is an <see cref="ArgumentException"/> (exit status 2) of one line.
    /// </summary>
    public static OutputFolder Claim(string path, string command, bool force)
    {
        string full = Normalize(path);
        if (Protected(full) is { } what)
            throw new ArgumentException($"--out {path}: refused, it is {what} (even with --force); choose another folder");
        if (File.Exists(full)) throw new ArgumentException($"--out {path}: a file, not a folder; choose another folder");
        if (!Directory.Exists(full)) return new(full, command, exclusive: true);
        if (!Directory.EnumerateFileSystemEntries(full).Any()) return new(full, command, exclusive: true);
        var marker = ReadMarker(full);
        if (marker is { } own && own.Command == command) return new(full, command, own.Exclusive);
        if (!force)
            throw new ArgumentException($"--out {full}: not empty and not an earlier output of medformer {command}"
                + (marker is { } other ? $" (medformer {other.Command} wrote it)" : $" (no {MarkerFile})")
                + "; choose another folder, or pass --force to add this command's files to it (nothing in it is removed)");
        return new(full, command, exclusive: false);
    }

    /// <summary>
    /// Creates the folder if needed and writes the marker, for commands that write files into it. A marker already
    /// there stays (an earlier run's, or with --force another command's, which keeps that command's claim), except
    /// that another command's folder written into is no longer all its own: it may not replace it whole after this.
    /// </summary>
    public void Mark()
    {
        Directory.CreateDirectory(FullPath);
        var marker = ReadMarker(FullPath);
        if (marker is null) WriteMarker(FullPath, Command, Exclusive);
        else if (marker is { Exclusive: true } other && other.Command != Command) WriteMarker(FullPath, other.Command, exclusive: false);
    }

    /// <summary>
    /// Writes the folder's contents in one go (a model folder): replacing the folder whole when it is missing or the
    /// command's own exclusive output (as re-running does), else adding the files to it and removing nothing.
    /// </summary>
    public void Write(Action<string> writeContents)
    {
        // Whole only what is certainly ours: a folder still missing, or one whose marker says this command made it all.
        if (!Directory.Exists(FullPath) || ReadMarker(FullPath) is { } own && own.Command == Command && own.Exclusive)
        {
            AtomicDirectory.Write(FullPath, staging =>
            {
                writeContents(staging);
                WriteMarker(staging, Command, Exclusive);
            });
            return;
        }
        // A folder found empty, or one holding others' files: kept as it is, the files added.
        AtomicDirectory.WriteInto(FullPath, writeContents);
        Mark();
    }

    static void WriteMarker(string folder, string command, bool exclusive)
    {
        var json = new JsonObject { ["command"] = command, ["version"] = Version, ["exclusive"] = exclusive };
        string path = Path.Combine(folder, MarkerFile), temporary = path + ".tmp";
        File.WriteAllText(temporary, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
        File.Move(temporary, path, overwrite: true);
    }

    static (string Command, bool Exclusive)? ReadMarker(string folder)
    {
        try
        {
            var json = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, MarkerFile)));
            return json?["command"]?.GetValue<string>() is { } command ? (command, json["exclusive"]?.GetValue<bool>() ?? false) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or JsonException or InvalidOperationException or FormatException)
        {
            return null;   // no marker, or not one we wrote: the folder is not the command's
        }
    }

    /// <summary>What makes a folder off limits whatever the flags: losing it would lose the user's work at large.</summary>
    static string? Protected(string full)
    {
        string cwd = Normalize(Environment.CurrentDirectory);
        string? home = Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } h ? Normalize(h) : null;
        string profile = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
        if (full == "/") return "the root folder";
        if (full == home || (profile.Length > 0 && full == Normalize(profile))) return "the home folder";
        if (full == cwd) return "the working folder";
        if (cwd.StartsWith(full + "/", StringComparison.Ordinal)) return "an ancestor of the working folder";
        return null;
    }

    /// <summary>The absolute path, without a trailing separator, through a symbolic link if the folder is one.</summary>
    static string Normalize(string path)
    {
        string full = Path.GetFullPath(path);
        if (full.Length > 1) full = full.TrimEnd('/');
        try
        {
            if (new DirectoryInfo(full).ResolveLinkTarget(returnFinalTarget: true) is { } target) full = Normalize(target.FullName);
        }
        catch (IOException) { }
        return full;
    }
}
