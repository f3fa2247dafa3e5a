using System.Text;
using System.Text.RegularExpressions;
using Xunit;

namespace Medformer.Tests.Architecture;

/// <summary>
/// Lines as .editorconfig keeps them: no line of a project's C# source is longer (in characters) than the
/// <c>max_line_length</c> of the last .editorconfig section that matches the file, as editors apply it.
/// </summary>
public sealed class LineLengthTests
{
    static readonly string[] Projects = ["runtime", "model", "datasets", "tracking", "training", "pretrain", "heads", "eval", "cli", "bench", "tests"];

    [Fact]
    public void NoLineOfTheProjectsIsLongerThanEditorconfigAllows()
    {
        var sections = Sections(File.ReadAllLines(Path.Combine(Repo.Root, ".editorconfig")));
        var over = new List<string>();
        int files = 0;
        foreach (string project in Projects)
            foreach (string file in Directory.EnumerateFiles(Path.Combine(Repo.Root, project), "*.cs", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(Repo.Root, file).Replace('\\', '/');
                if (relative.Split('/').Any(part => part is "bin" or "obj")) continue;
                files++;
                int limit = LimitFor(relative, sections) ?? throw new InvalidOperationException($".editorconfig: no max_line_length for {relative}");
                string[] lines = File.ReadAllLines(file);
                for (int i = 0; i < lines.Length; i++)
                {
                    int length = lines[i].EnumerateRunes().Count();
                    if (length > limit) over.Add($"{relative}:{i + 1}: {length} characters, over {limit}");
                }
            }
        Assert.True(files > 300, $"only {files} C# files found under {Repo.Root}");
        Assert.True(over.Count == 0, $"{over.Count} line(s) too long:\n{string.Join("\n", over.Take(40))}");
    }

    [Fact]
    public void TheLimitIsTheLastMatchingSections()
    {
        var sections = Sections(File.ReadAllLines(Path.Combine(Repo.Root, ".editorconfig")));
        Assert.Equal(160, LimitFor("training/Trainer.cs", sections));
        Assert.Equal(160, LimitFor("tests/architecture/LineLengthTests.cs", sections));
        Assert.Equal(int.MaxValue, LimitFor("a/b.cs", Sections(["[*.cs]", "max_line_length = 120", "[a/b.cs]", "max_line_length = off"])));
        var made = Sections(["[*]", "max_line_length = 100", "[*.cs]", "max_line_length = 120", "[{cli/**.cs,x/y/*.cs}]", "max_line_length = 140"]);
        Assert.Equal(120, LimitFor("a/b/c.cs", made));
        Assert.Equal(140, LimitFor("cli/sub/Command.cs", made));
        Assert.Equal(140, LimitFor("x/y/z.cs", made));
        Assert.Equal(120, LimitFor("x/y/w/z.cs", made));
        Assert.Equal(100, LimitFor("run.sh", made));
    }

    /// <summary>The sections in order: the glob as a regex over the path from the repository's root, and its max_line_length.</summary>
    static List<(Regex Glob, int? Limit)> Sections(IEnumerable<string> lines)
    {
        var sections = new List<(Regex, int?)>();
        foreach (string raw in lines)
        {
            string line = raw.Trim();
            if (line.StartsWith('[') && line.EndsWith(']')) sections.Add((Glob(line[1..^1]), null));
            else if (sections.Count > 0 && Regex.Match(line, @"^max_line_length\s*=\s*(\d+|off)$") is { Success: true } m)
                sections[^1] = (sections[^1].Item1, m.Groups[1].Value == "off" ? int.MaxValue : int.Parse(m.Groups[1].Value));
        }
        return sections;
    }

    static int? LimitFor(string relative, List<(Regex Glob, int? Limit)> sections) =>
        sections.LastOrDefault(s => s.Limit is not null && s.Glob.IsMatch(relative)).Limit;

    /// <summary>EditorConfig's globs: * (not across /), ** (across), {a,b}; a glob without / matches the file name at any depth.</summary>
    static Regex Glob(string glob)
    {
        var regex = new StringBuilder(glob.Contains('/') ? "^" : "(^|/)");
        for (int i = 0; i < glob.Length; i++)
        {
            char c = glob[i];
            if (c == '*' && i + 1 < glob.Length && glob[i + 1] == '*') { regex.Append(".*"); i++; }
            else if (c == '*') regex.Append("[^/]*");
            else if (c == '{') regex.Append("(?:");
            else if (c == '}') regex.Append(')');
            else if (c == ',') regex.Append('|');
            else regex.Append(Regex.Escape(c.ToString()));
        }
        return new Regex(regex.Append('$').ToString());
    }
}
