using System.Text.Json;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Xunit;

namespace Medformer.Tests.Eval;

/// <summary>A report cell: mean ± sample std over its runs; one run says n=1 rather than a spread of zero.</summary>
public sealed class MeanStdTests
{
    [Fact]
    public void OneRunSaysSoAndSeveralShowTheirSpread()
    {
        Assert.Equal("80.6 (n=1)", MeanStd.Of([0.806]).Format());
        Assert.Equal("80.0 ± 1.4", MeanStd.Of([0.79, 0.81]).Format());
        Assert.Equal("–", MeanStd.Of([double.NaN]).Format());
        Assert.True(double.IsNaN(MeanStd.Of([0.806]).Spread));
        Assert.Equal(MeanStd.Of([0.79, 0.81]).Std, MeanStd.Of([0.79, 0.81]).Spread);
    }

    static CellResult Cell(string init, int seed, double acc) =>
        new(init, 0.1, seed, 40, new Dictionary<string, double> { ["acc"] = acc }, "acc", 5, acc, 1.5, [new(1, 2.3)], [new(5, acc)]);

    [Fact]
    public void EveryFileOfTheReportShowsOneRunWithoutASpreadOfZero()
    {
        string root = Directory.CreateTempSubdirectory("medformer-report-n1-").FullName;
        try
        {
            // "random init" has one run, "ours" two.
            var files = EvaluationReport.Write(root, "n=1", [Cell("random init", 0, 0.5), Cell("ours", 0, 0.6), Cell("ours", 1, 0.7)],
                [new MetricInfo("acc", "ACC")], ["random init", "ours"], [0.1], new Dictionary<string, string>());
            string markdown = File.ReadAllText(files.Markdown);
            Assert.Contains("| random init | 50.0 (n=1) |", markdown);
            Assert.Contains("| ours | **65.0 ± 7.1** |", markdown);
            Assert.DoesNotContain("± 0.0", markdown);
            var summary = File.ReadAllLines(files.SummaryCsv);
            Assert.Contains("random init,0.1,acc,0.5,,1", summary);
            Assert.Contains(summary, l => l.StartsWith("ours,0.1,acc,0.6", StringComparison.Ordinal) && l.EndsWith(",2",
                StringComparison.Ordinal) && !l.Contains(",,"));
            using var json = JsonDocument.Parse(File.ReadAllText(files.Json));
            var rows = json.RootElement.GetProperty("tables")[0].GetProperty("rows");
            Assert.Equal(JsonValueKind.Null, rows[0].GetProperty("cells")[0].GetProperty("std").ValueKind);
            Assert.Equal(1, rows[0].GetProperty("cells")[0].GetProperty("runs").GetInt32());
            Assert.Equal(0.0707, rows[1].GetProperty("cells")[0].GetProperty("std").GetDouble(), 4);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
