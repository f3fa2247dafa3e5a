using Medformer.Runtime;

namespace Medformer.Tracking;

/// <summary>
/// mlflow.log_artifact(s) into a local artifact root, for the file store and the SQLite store alike: a relative
/// artifact path without '..' (artifacts stay inside the run), each file copied atomically.
/// </summary>
static class ArtifactFiles
{
    public static void LogFile(string artifactRoot, string localFile, string? artifactPath)
    {
        if (!File.Exists(localFile)) throw new ArgumentException($"artifact {localFile}: no such file");
        AtomicFile.Copy(localFile, Path.Combine(Target(artifactRoot, artifactPath), Path.GetFileName(localFile)));
    }

    public static void LogFolder(string artifactRoot, string localDirectory, string? artifactPath)
    {
        if (!Directory.Exists(localDirectory)) throw new ArgumentException($"artifacts {localDirectory}: no such folder");
        string target = Target(artifactRoot, artifactPath);
        foreach (string file in Directory.EnumerateFiles(localDirectory, "*", SearchOption.AllDirectories))
        {
            string destination = Path.Combine(target, Path.GetRelativePath(localDirectory, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            AtomicFile.Copy(file, destination);
        }
    }

    static string Target(string root, string? artifactPath)
    {
        if (string.IsNullOrEmpty(artifactPath)) return Directory.CreateDirectory(root).FullName;
        FileStore.ValidateArtifactPath(artifactPath);
        return Directory.CreateDirectory(Path.Combine(root, artifactPath)).FullName;
    }
}
