using System.Text.Json;
using Medformer.Datasets.Corpora;
using Xunit;
using Xunit.Abstractions;
using Medformer.Runtime;

namespace Medformer.Tests.Eval;

/// <summary>`medformer evaluate` end to end on a small phantom file: the JSON report, a rerun that trains nothing, bad arguments.</summary>
public sealed class EvaluateCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-evaluate-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    Repo.Result Evaluate(params string[] args)
    {
        var result = Repo.Run(Repo.Cli, ["evaluate", .. args], timeoutSeconds: 300, environment: new Dictionary<string,
            string> { ["MEDFORMER_HOME"] = Repo.TestHome });
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }

    [Fact]
    public void WritesTheReportAndResumes()
    {
        string file = Phantom.Ensure(new PhantomSpec(Dimensionality.Image, 16, 100, 40, 40), Path.Combine(root, "data"));
        string config = Path.Combine(root, "config.json");
        File.WriteAllText(config, JsonSerializer.Serialize(MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 },
            MedformerConfig.Json));
        string outDir = Path.Combine(root, "out");
        string[] args = ["--task", $"npz:{file}", "--init", "random", "--fractions", "20%,100%", "--seeds", "1", "--max-steps", "4", "--batch-size", "8",
            "--config", config, "--precision", "fp32", "--out", outDir, "--json", "--tracking-uri", Path.Combine(root, "mlruns")];
        var first = Evaluate(args);
        Assert.True(first.ExitCode == 0, first.Stderr);
        using var report = JsonDocument.Parse(first.Stdout);
        Assert.Equal(2, report.RootElement.GetProperty("trained").GetInt32());
        var acc = report.RootElement.GetProperty("tables")[0];
        Assert.Equal("acc", acc.GetProperty("metric").GetString());
        var cells = acc.GetProperty("rows")[0].GetProperty("cells");
        Assert.Equal(2, cells.GetArrayLength());
        foreach (var cell in cells.EnumerateArray()) Assert.Equal(1, cell.GetProperty("runs").GetInt32());
        foreach (var path in report.RootElement.GetProperty("files").EnumerateArray()) Assert.True(File.Exists(path.GetString()), path.GetString());
        Assert.Contains("| random init |", File.ReadAllText(Path.Combine(outDir, "report.md")));
        // The MLflow run (file store): each cell's metrics with the seed as step, the table's means, the report as artifacts.
        var mlruns = Path.Combine(root, "mlruns");
        Assert.Single(Directory.GetFiles(mlruns, "acc.random_init.f0.2", SearchOption.AllDirectories));
        Assert.Single(Directory.GetFiles(mlruns, "auc_mean.random_init.f1", SearchOption.AllDirectories));
        Assert.Single(Directory.GetFiles(mlruns, "report.md", SearchOption.AllDirectories), f => f.Contains(Path.Combine("artifacts", "report")));

        var again = Evaluate(args);
        Assert.True(again.ExitCode == 0, again.Stderr);
        using var second = JsonDocument.Parse(again.Stdout);
        Assert.Equal(0, second.RootElement.GetProperty("trained").GetInt32());
        Assert.Equal(2, second.RootElement.GetProperty("kept").GetInt32());

        var other = Evaluate([.. args.Select(a => a == "4" ? "5" : a)]);
        Assert.Equal(2, other.ExitCode);
        Assert.Contains("max_steps", other.Stderr);
    }

    [Theory]
    [InlineData("--task", "nothing")]
    [InlineData("--protocol", "thirds")]
    [InlineData("--fractions", "0,1")]
    [InlineData("--init", "/no/such/model")]
    public void BadArgumentsExitTwoWithOneLine(string option, string value)
    {
        var result = Evaluate(option, value, "--out", Path.Combine(root, "bad"), "--tracking-uri", Path.Combine(root, "mlruns"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(option, result.Stderr);
        Assert.Single(result.Stderr.Trim().Split('\n'));
        Assert.False(Directory.Exists(Path.Combine(root, "mlruns")), "no MLflow run for bad arguments");
    }

    [Fact]
    public void TheRestorationTableFromTheCommandLine()
    {
        string studies = SyntheticPet.Write(Path.Combine(root, "pet"), 6, 16, seed: 2);
        var result = Evaluate("--task", $"petct:{studies}", "--head", "restoration", "--init", "gaussian", "--protocol", "halves", "--fractions", "1",
            "--seeds", "2", "--out", Path.Combine(root, "pet-out"), "--json", "--tracking-uri", "none");
        Assert.True(result.ExitCode == 0, result.Stderr);
        using var report = JsonDocument.Parse(result.Stdout);
        var table = report.RootElement.GetProperty("tables")[0];
        Assert.Equal("score_mse", table.GetProperty("metric").GetString());
        var row = table.GetProperty("rows")[0];
        Assert.Equal("Gaussian filter", row.GetProperty("init").GetString());
        Assert.Equal(2, row.GetProperty("cells")[0].GetProperty("runs").GetInt32());
        Assert.Contains("| Gaussian filter |", File.ReadAllText(Path.Combine(root, "pet-out", "report.md")));

        var wrong = Evaluate("--task", "petct", studies, "--head", "segmentation", "--out", Path.Combine(root, "seg-out"), "--tracking-uri", "none");
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains("no label maps", wrong.Stderr);
        // The older two-word spelling still reads, with a line saying how to write it now.
        Assert.Contains($"medformer evaluate: --task 'petct {studies}' is deprecated; write --task petct:{studies}", wrong.Stderr);
    }
}
