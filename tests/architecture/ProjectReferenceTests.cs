using System.Xml.Linq;
using Xunit;

namespace Medformer.Tests.Architecture;

/// <summary>
/// The layers of the house, as docs/architecture.md draws them: each project references exactly the projects
/// below it that it uses, and nothing above. A new reference is a design change: change this table with it.
/// </summary>
public sealed class ProjectReferenceTests
{
    static readonly Dictionary<string, string[]> Arrows = new()
    {
        ["runtime"] = [],
        ["model"] = ["runtime"],
        ["datasets"] = ["runtime"],
        ["tracking"] = ["runtime"],
        ["training"] = ["runtime", "model", "datasets"],
        ["pretrain"] = ["training"],
        ["heads"] = ["training"],
        ["eval"] = ["heads"],
        ["cli"] = ["runtime", "model", "datasets", "training", "pretrain", "heads", "eval", "tracking"],
        ["bench"] = ["runtime", "model", "datasets", "training", "pretrain", "heads", "eval"],
        ["tests"] = ["runtime", "model", "datasets", "training", "pretrain", "heads", "eval", "tracking", "bench"],
    };

    [Fact]
    public void EveryProjectReferencesExactlyTheLayersItsArrowsName()
    {
        var projects = Directory.GetFiles(Repo.Root, "*.csproj", SearchOption.AllDirectories)
            .Where(p => Path.GetFileName(Path.GetDirectoryName(p)) is { } folder && Arrows.ContainsKey(folder)
                && Path.GetDirectoryName(Path.GetDirectoryName(p)) == Path.TrimEndingDirectorySeparator(Repo.Root))
            .ToDictionary(p => Path.GetFileName(Path.GetDirectoryName(p))!);
        Assert.Equal(Arrows.Keys.Order(), projects.Keys.Order());
        foreach (var (folder, path) in projects)
        {
            var references = XDocument.Load(path).Descendants("ProjectReference")
                .Select(r => r.Attribute("Include")!.Value.Replace('\\', '/').Split('/')[1])
                .Order();
            Assert.True(references.SequenceEqual(Arrows[folder].Order()),
                $"{folder}/ references {string.Join(", ", references)}; the layout says {string.Join(", ", Arrows[folder].Order())}");
        }
    }

    [Fact]
    public void TheSolutionHoldsEveryLayer()
    {
        string solution = File.ReadAllText(Path.Combine(Repo.Root, "Medformer.sln"));
        foreach (string folder in Arrows.Keys)
            Assert.Contains($"{folder}\\Medformer.", solution, StringComparison.Ordinal);
    }
}
