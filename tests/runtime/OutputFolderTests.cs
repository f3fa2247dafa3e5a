using System.Text.Json.Nodes;
using Medformer.Runtime;
using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>The --out policy: what is refused (with and without force), and what a write keeps.</summary>
public sealed class OutputFolderTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-output-folder-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Canaried(string name)
    {
        string folder = Directory.CreateDirectory(Path.Combine(root, name)).FullName;
        File.WriteAllText(Path.Combine(folder, "canary.txt"), "tweet");
        return folder;
    }

    static string[] Entries(string folder) => [.. Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName).Order()!];

    static JsonNode Marker(string folder) => JsonNode.Parse(File.ReadAllText(Path.Combine(folder, OutputFolder.MarkerFile)))!;

    static void WriteA(string folder) => File.WriteAllText(Path.Combine(folder, "a.txt"), "a");

    [Fact]
    public void TheWorkingFolderHomeRootAndAncestorsAreRefusedEvenWithForce()
    {
        string cwd = Environment.CurrentDirectory;
        List<string> refused = [cwd, ".", "/", Environment.GetEnvironmentVariable("HOME") ?? "/",
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile)];
        if (Path.GetDirectoryName(cwd) is { } parent) refused.Add(parent);
        foreach (string path in refused.Where(p => p.Length > 0))
        {
            var e = Assert.Throws<ArgumentException>(() => OutputFolder.Claim(path, "export", force: true));
            Assert.Contains("even with --force", e.Message);
            Assert.Contains(path, e.Message);
        }
        if (Path.GetDirectoryName(cwd) is { } above && above != "/" && above != Environment.GetEnvironmentVariable("HOME"))
            Assert.Contains("an ancestor of the working folder", Assert.Throws<ArgumentException>(() => OutputFolder.Claim(above, "export",
                force: true)).Message);
    }

    [Fact]
    public void AForeignFolderIsRefusedInOneLineAndLeftAsItWas()
    {
        string folder = Canaried("work");
        var e = Assert.Throws<ArgumentException>(() => OutputFolder.Claim(folder, "export", force: false));
        Assert.Contains(folder, e.Message);
        Assert.Contains("--force", e.Message);
        Assert.DoesNotContain('\n', e.Message);
        Assert.Equal(["canary.txt"], Entries(folder));
        Assert.Equal(["work"], Entries(root));
    }

    [Fact]
    public void AnotherCommandsOutputIsRefusedNamingIt()
    {
        string folder = Path.Combine(root, "model");
        OutputFolder.Claim(folder, "import", force: false).Write(WriteA);
        var e = Assert.Throws<ArgumentException>(() => OutputFolder.Claim(folder, "export", force: false));
        Assert.Contains("medformer import wrote it", e.Message);
    }

    [Fact]
    public void AnotherCommandsFolderWrittenIntoWithForceIsNoLongerItsAlone()
    {
        string folder = Path.Combine(root, "model");
        OutputFolder.Claim(folder, "import", force: false).Write(WriteA);
        OutputFolder.Claim(folder, "export", force: true).Write(f => File.WriteAllText(Path.Combine(f, "b.txt"), "b"));
        Assert.Equal("import", Marker(folder)["command"]!.GetValue<string>());
        Assert.False(Marker(folder)["exclusive"]!.GetValue<bool>());

        // So import's rerun adds its files and keeps export's.
        OutputFolder.Claim(folder, "import", force: false).Write(WriteA);
        Assert.Equal([OutputFolder.MarkerFile, "a.txt", "b.txt"], Entries(folder));
    }

    [Fact]
    public void ForceAddsTheFilesAndRemovesNothing()
    {
        string folder = Canaried("work");
        var claimed = OutputFolder.Claim(folder, "export", force: true);
        Assert.False(claimed.Exclusive);
        claimed.Write(WriteA);
        Assert.Equal([OutputFolder.MarkerFile, "a.txt", "canary.txt"], Entries(folder));
        Assert.False(Marker(folder)["exclusive"]!.GetValue<bool>());
        Assert.Equal(["work"], Entries(root));   // no staging folder left beside it

        // Its own output now, though not all its own: a rerun needs no --force and still only adds.
        var again = OutputFolder.Claim(folder, "export", force: false);
        Assert.False(again.Exclusive);
        again.Write(f => File.WriteAllText(Path.Combine(f, "b.txt"), "b"));
        Assert.Equal([OutputFolder.MarkerFile, "a.txt", "b.txt", "canary.txt"], Entries(folder));
        Assert.Equal("tweet", File.ReadAllText(Path.Combine(folder, "canary.txt")));
    }

    [Fact]
    public void ItsOwnOutputIsReplacedWhole()
    {
        string folder = Path.Combine(root, "exported");
        var first = OutputFolder.Claim(folder, "export", force: false);
        Assert.True(first.Exclusive);
        first.Write(f => File.WriteAllText(Path.Combine(f, "old.txt"), "old"));
        Assert.True(Marker(folder)["exclusive"]!.GetValue<bool>());
        Assert.Equal("export", Marker(folder)["command"]!.GetValue<string>());

        OutputFolder.Claim(folder, "export", force: false).Write(WriteA);
        Assert.Equal([OutputFolder.MarkerFile, "a.txt"], Entries(folder));
        Assert.Equal(["exported"], Entries(root));
    }

    [Fact]
    public void AnEmptyFolderIsKeptAndBecomesTheCommandsOwn()
    {
        string folder = Directory.CreateDirectory(Path.Combine(root, "empty")).FullName;
        var claimed = OutputFolder.Claim(folder, "predict", force: false);
        Assert.True(claimed.Exclusive);
        claimed.Mark();
        Assert.Equal([OutputFolder.MarkerFile], Entries(folder));
        Assert.True(Marker(folder)["exclusive"]!.GetValue<bool>());
        Assert.Equal(["empty"], Entries(root));
    }

    [Fact]
    public void AFileIsNoFolder()
    {
        string file = Path.Combine(root, "file");
        File.WriteAllText(file, "x");
        Assert.Contains("a file, not a folder", Assert.Throws<ArgumentException>(() => OutputFolder.Claim(file, "export", force: true)).Message);
    }
}
