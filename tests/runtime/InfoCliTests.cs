using System.Text.Json;
using Xunit;

namespace Medformer.Tests.Runtime;

/// <summary>`medformer info`: humanised, aligned numbers for a person; exact ones with --json.</summary>
public sealed class InfoCliTests
{
    [Fact]
    public void TextIsHumanisedAndAlignedAndJsonIsExact()
    {
        var text = Repo.Run(Repo.Cli, ["info", "--config", "small", "--input", "28x28"]);
        Assert.Equal(0, text.ExitCode);
        var lines = text.Stdout.Trim().Split('\n');
        Assert.Contains(lines, l => l.StartsWith("parameters ", StringComparison.Ordinal) && l.EndsWith(" 6.55 M", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("forward_flops ", StringComparison.Ordinal) && l.EndsWith(" 0.548 GFLOP", StringComparison.Ordinal));
        Assert.Single(lines.Select(l => l.Length - l[l.IndexOf(' ')..].TrimStart().Length).Distinct());  // one value column

        var json = Repo.Run(Repo.Cli, ["info", "--config", "small", "--input", "28x28", "--json"]);
        var root = JsonDocument.Parse(json.Stdout).RootElement;
        Assert.Equal(6551040, root.GetProperty("parameters").GetInt64());
        Assert.Equal(548168704, root.GetProperty("forward_flops").GetDouble());
    }
}
