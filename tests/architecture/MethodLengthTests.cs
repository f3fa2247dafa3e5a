using Microsoft.CodeAnalysis;
using Microsoft.CodeAnalysis.CSharp;
using Microsoft.CodeAnalysis.CSharp.Syntax;
using Xunit;

namespace Medformer.Tests.Architecture;

/// <summary>
/// Methods a reader takes in at once: no method, constructor, accessor, operator or local function of the projects
/// (tests aside) spans more than <see cref="Limit"/> lines from its signature to its closing brace, measured on C#'s
/// own syntax tree. The exceptions are tables and an interpreter's switch, listed below with the reason.
/// </summary>
public sealed class MethodLengthTests
{
    const int Limit = 60;

    static readonly string[] Projects = ["runtime", "model", "datasets", "tracking", "training", "pretrain", "heads", "eval", "cli", "bench"];

    /// <summary>Longer by nature: each is a list a reader scans, not a procedure to follow.</summary>
    static readonly Dictionary<string, string> Exceptions = new()
    {
        ["datasets/Formats/NiftiHeader.cs ParseNifti1"] = "the NIfTI-1 header's fields in file order, one line each",
        ["datasets/Formats/NiftiWriter.cs HeaderFor"] = "the NIfTI-1 header's fields in file order, one line each",
        ["tracking/Interop/PickleReader.cs Run"] = "the pickle virtual machine's opcode switch",
    };

    [Fact]
    public void NoMethodOfTheProjectsIsLongerThanTheLimit()
    {
        var methods = Measure().ToList();
        Assert.True(methods.Count > 1500, $"only {methods.Count} methods found under {Repo.Root}");
        var over = methods.Where(m => m.Lines > Limit && !Exceptions.ContainsKey(m.Name)).OrderByDescending(m => m.Lines)
            .Select(m => $"{m.Name} (line {m.Line}): {m.Lines} lines, over {Limit}").ToList();
        Assert.True(over.Count == 0, $"{over.Count} method(s) too long:\n{string.Join("\n", over)}");
    }

    [Fact]
    public void EveryExceptionStillNeedsToBeOne()
    {
        // An exception that was shortened, renamed or removed leaves the list, so the list cannot grow stale.
        var lengths = Measure().ToLookup(m => m.Name, m => m.Lines);
        foreach (string name in Exceptions.Keys)
            Assert.True(lengths[name].Any(lines => lines > Limit), $"{name}: listed as an exception but not over {Limit} lines any more");
    }

    [Fact]
    public void TheMeasureCountsFromSignatureToClosingBrace()
    {
        const string source = """
            sealed class C
            {
                /// <summary>Not counted: documentation.</summary>
                int Three(int a)
                {
                    return a;
                }

                int Arrow(int a) =>
                    a + 1;

                C()
                {
                    int Local() { return 1; }
                }
            }
            """;
        var found = Methods(CSharpSyntaxTree.ParseText(source), "x.cs").ToDictionary(m => m.Name, m => m.Lines);
        Assert.Equal(4, found["x.cs Three"]);
        Assert.Equal(2, found["x.cs Arrow"]);
        Assert.Equal(4, found["x.cs C"]);
        Assert.Equal(1, found["x.cs Local"]);
    }

    sealed record Method(string Name, int Line, int Lines);

    static IEnumerable<Method> Measure()
    {
        foreach (string project in Projects)
            foreach (string file in Directory.EnumerateFiles(Path.Combine(Repo.Root, project), "*.cs", SearchOption.AllDirectories))
            {
                string relative = Path.GetRelativePath(Repo.Root, file).Replace('\\', '/');
                if (relative.Split('/').Any(part => part is "bin" or "obj")) continue;
                foreach (var method in Methods(CSharpSyntaxTree.ParseText(File.ReadAllText(file)), relative)) yield return method;
            }
    }

    static IEnumerable<Method> Methods(SyntaxTree tree, string file)
    {
        foreach (var node in tree.GetRoot().DescendantNodes())
        {
            string? name = node switch
            {
                MethodDeclarationSyntax m => m.Identifier.Text,
                ConstructorDeclarationSyntax c => c.Identifier.Text,
                LocalFunctionStatementSyntax l => l.Identifier.Text,
                OperatorDeclarationSyntax o => "operator " + o.OperatorToken.Text,
                AccessorDeclarationSyntax a when a.Body is not null || a.ExpressionBody is not null =>
                    $"{(a.Parent?.Parent as BasePropertyDeclarationSyntax) switch { PropertyDeclarationSyntax p => p.Identifier.Text, _ => "this" }}." +
                    a.Keyword.Text,
                _ => null,
            };
            if (name is null) continue;
            // Span leaves out the leading trivia, so documentation comments do not count towards a method's length.
            var span = tree.GetLineSpan(node.Span);
            yield return new Method($"{file} {name}", span.StartLinePosition.Line + 1, span.EndLinePosition.Line - span.StartLinePosition.Line + 1);
        }
    }
}
