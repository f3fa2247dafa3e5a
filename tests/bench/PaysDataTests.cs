using System.Collections;
using Medformer.Bench;
using Medformer.Pretrain;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Bench;

/// <summary>A fact that needs Debian's python3-sklearn (its bundled digits); skipped, saying so, where it is absent.</summary>
public sealed class SklearnFactAttribute : FactAttribute
{
    static readonly bool Available = Repo.Run("/usr/bin/python3", ["-c", "import sklearn.datasets"]).ExitCode == 0;

    public SklearnFactAttribute()
    {
        if (!Available) Skip = "python3-sklearn is absent: /usr/bin/python3 -c \"import sklearn.datasets\" failed";
    }
}

/// <summary>
/// <c>bench/run pays</c>'s data and table: scikit-learn's digits exported in MNIST's layout open as a set of their
/// own and become the pretraining corpus; a bad MEDFORMER_PAYS_DATA is refused by name; the Markdown table has a
/// row per method, mean ± std per fraction, and the command that reproduces it.
/// </summary>
public sealed class PaysDataTests(ITestOutputHelper output) : IDisposable
{
    readonly string folder = Directory.CreateTempSubdirectory("medformer-pays-data-").FullName;

    public void Dispose() => Directory.Delete(folder, recursive: true);

    [SklearnFact]
    public void TheDigitsExportOpensAsASetAndBecomesThePretrainingCorpus()
    {
        string digits = Path.Combine(folder, "digits");
        var export = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "bench", "reference", "export_digits.py"), digits]);
        output.WriteLine(export.Stdout + export.Stderr);
        Assert.Equal(0, export.ExitCode);
        using var data = PaysData.Open(digits);
        Assert.Equal(1438, data.Train.Count);
        Assert.Equal(359, data.Test.Count);
        Assert.Equal([28L, 28], data.Spatial);
        Assert.Equal("digits", data.Name);
        var labels = Enumerable.Range(0, (int)data.Test.Count).Select(i => { using var s = data.Test.Get(i); return s.Meta.Labels[0]; }).ToArray();
        Assert.Equal(10, labels.Distinct().Count());
        using (var sample = data.Train.Get(0))
            Assert.InRange(sample.Image.max().item<float>(), 0.5f, 1f);

        Environment.SetEnvironmentVariable("MEDFORMER_PAYS_PRETRAIN_STEPS", "40");
        Environment.SetEnvironmentVariable("MEDFORMER_PAYS_STEM", "conv");
        try
        {
            var config = data.RunConfigFor(RunConfig.Load(Path.Combine(Repo.Root, "bench", "configs", "fashion-mnist-mae.yaml")), folder);
            Assert.Equal(digits, Assert.Single(config.Corpora).Mnist);
            Assert.Equal(40, config.Schedule.MaxSteps);
            Assert.True(config.Schedule.WarmupSteps <= 4);
            Assert.Equal("conv", MedformerConfig.Load(config.Model).Stem);
            Assert.Equal(MedformerConfig.Tiny with { Stem = "conv" }, MedformerConfig.Load(config.Model) with { Organs = MedformerConfig.Tiny.Organs,
                Modalities = MedformerConfig.Tiny.Modalities, Dimensionalities = MedformerConfig.Tiny.Dimensionalities, Tasks = MedformerConfig.Tiny.Tasks });
        }
        finally
        {
            Environment.SetEnvironmentVariable("MEDFORMER_PAYS_PRETRAIN_STEPS", null);
            Environment.SetEnvironmentVariable("MEDFORMER_PAYS_STEM", null);
        }
    }

    [Fact]
    public void ABadDataValueIsRefusedNamingTheKey()
    {
        Assert.Contains("MEDFORMER_PAYS_DATA", Assert.Throws<ArgumentException>(() => PaysData.Open("nothing-of-the-kind")).Message);
        Assert.Contains("MEDFORMER_PAYS_DATA", Assert.Throws<ArgumentException>(() => PaysData.Open("msd:" + folder)).Message);
    }

    [Fact]
    public void TheTableHasARowPerMethodWithItsCommand()
    {
        var table = new PaysTable("mnist:/data/digits", [0.01, 0.1]);
        table.Add("small CNN from scratch", "cnn", 0.01, 0.4, 1.0);
        table.Add("small CNN from scratch", "cnn", 0.01, 0.6, 1.5);
        table.Add("small CNN from scratch", "cnn", 0.1, 0.8, 2.0);
        table.Add("Medformer pretrained, fine-tuned", "pretrained", 0.1, 0.9, 3.0);
        var environment = new Hashtable { ["MEDFORMER_PAYS_DATA"] = "/data/digits", ["MEDFORMER_PAYS_OUT"] = "/tmp/x",
            ["MEDFORMER_PAYS_FIXMATCH"] = "150:0.7:2", ["PATH"] = "/bin" };
        string command = PaysTable.Command(environment);
        Assert.Equal("MEDFORMER_PAYS_DATA=/data/digits MEDFORMER_PAYS_FIXMATCH=150:0.7:2", command);
        string markdown = table.Markdown(command, 12.5, "conv");
        output.WriteLine(markdown);
        var lines = markdown.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Contains("1% of the labels | 10% of the labels | CPU-min | command |", lines.Single(l => l.StartsWith("| method")));
        Assert.Equal("| small CNN from scratch | 50.0 ± 14.1 (40.0, 60.0) | 80.0 ± 0.0 | 4.5 | `MEDFORMER_PAYS_DATA=/data/digits " +
            "MEDFORMER_PAYS_FIXMATCH=150:0.7:2 MEDFORMER_PAYS_METHODS=cnn bench/run pays` |",
            lines.Single(l => l.StartsWith("| small CNN")));
        Assert.StartsWith("| Medformer pretrained, fine-tuned |  | 90.0 ± 0.0 | 3.0 |", lines.Single(l => l.StartsWith("| Medformer")));
        Assert.Contains("pretraining 12.5 CPU-min", lines[0]);
        Assert.Contains("tokenizer: conv", lines[0]);
    }
}
