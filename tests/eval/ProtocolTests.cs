using System.Buffers.Binary;
using System.Xml.Linq;
using Medformer.Datasets.Corpora;
using Medformer.Eval.Protocols;
using Medformer.Eval.Reports;
using Medformer.Heads;
using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Eval;

/// <summary>
/// A small protocol end to end on the embedded phantom corpus: a tiny model, a few steps, 2 fractions × 2 seeds × 2
/// initialisations; interrupted after three cells and resumed without redoing them; its report complete.
/// </summary>
public sealed class ProtocolTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-protocol-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static MedformerConfig Config => MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 2, DecoderHeads = 2, Depth = 1 };

    static readonly PhantomSpec Spec = new(Dimensionality.Image, 16, 200, 60, 80);

    /// <summary>Counts the cells it really trains.</summary>
    sealed class Counting(ICellTrainer inner) : ICellTrainer
    {
        public int Trained;
        public IReadOnlyList<MetricInfo> Metrics => inner.Metrics;
        public IReadOnlyDictionary<string, string> Settings => inner.Settings;

        public CellResult Train(CellPlan plan, CancellationToken cancel = default)
        {
            Trained++;
            return inner.Train(plan, cancel);
        }
    }

    [Fact]
    public void RunsResumesAndReports()
    {
        using var data = EvaluationData.Phantom(Spec, Path.Combine(Repo.TestHome, "phantom"));
        Seeding.SeedEverything(77);
        string pretrained = Path.Combine(root, "other-init");
        using (var model = new MedformerModel(Config)) Checkpoint.Save(model, pretrained);
        Initialisation[] inits = [Initialisation.Random, Initialisation.Parse($"other={pretrained}")];
        var spec = new ProtocolSpec(ProtocolKind.Fractions, [0.1, 1.0], Seeds: 2);
        var settings = new FineTuneSettings
        {
            FineTune = FineTuneSettings.Recipe with { MaxSteps = 8, LearningRate = 2e-3, BatchSize = 16, Precision = Precision.Fp32, Workers = 0 },
            Evaluations = 2, Pooling = Pooling.Mean,
        };
        string store = Path.Combine(root, "results");

        using var cells = new ClassificationCells(data, settings, Config);
        var first = new Counting(cells);
        using (var interrupt = new CancellationTokenSource())
        {
            int finished = 0;
            Assert.Throws<OperationCanceledException>(() => ProtocolRunner.Run(spec, data, inits, first, new ResultStore(store, ProtocolRunner.Settings(spec,
                first)),
                output.WriteLine, _ => { if (++finished == 3) interrupt.Cancel(); }, interrupt.Token));
        }
        Assert.Equal(3, first.Trained);
        Assert.Equal(3, File.ReadAllLines(Path.Combine(store, "cells.jsonl")).Length);
        File.AppendAllText(Path.Combine(store, "cells.jsonl"), "{\"init\":\"random init\",\"fract");  // a write torn by a crash

        var second = new Counting(cells);
        var results = ProtocolRunner.Run(spec, data, inits, second, new ResultStore(store, ProtocolRunner.Settings(spec, second)), output.WriteLine);
        Assert.Equal(5, second.Trained);
        Assert.Equal(8, results.Count);
        Assert.Equal(8, File.ReadAllLines(Path.Combine(store, "cells.jsonl")).Length);
        foreach (var r in results)
        {
            Assert.InRange(r.Metrics["acc"], 0, 1);
            Assert.InRange(r.Metrics["auc"], 0, 1);
            Assert.Equal(r.Fraction == 1.0 ? 200 : 20, r.TrainCount);
            Assert.Contains(r.SelectedStep, r.Validation.Select(p => p.Step));
            Assert.NotEmpty(r.Loss);
        }

        // Other settings are refused for the same results.
        var other = new ClassificationCells(data, settings with { FineTune = settings.FineTune with { MaxSteps = 9 } }, Config);
        Assert.Contains("max_steps", Assert.Throws<ArgumentException>(() => new ResultStore(store, ProtocolRunner.Settings(spec, other))).Message);

        string reportDir = Path.Combine(root, "report");
        var files = EvaluationReport.Write(reportDir, "phantom, fractions", results, cells.Metrics, [.. inits.Select(i => i.Name)], spec.Fractions,
            ProtocolRunner.Settings(spec, cells));
        var table = new ResultTable(results, cells.Metrics[0], [.. inits.Select(i => i.Name)], spec.Fractions);
        foreach (var init in inits)
            foreach (double f in spec.Fractions)
                Assert.Equal(2, table[init.Name, f].Count);
        string markdown = File.ReadAllText(files.Markdown);
        output.WriteLine(markdown);
        Assert.Contains("| ACC (%), mean ± std over 2 runs | 10% | 100% |", markdown);
        Assert.Contains("| random init | ", markdown);
        Assert.Contains("| other | ", markdown);
        Assert.Equal(1 + 2 * 2 * 2, File.ReadAllLines(files.SummaryCsv).Length);
        Assert.Equal(1 + 8, File.ReadAllLines(files.CellsCsv).Length);

        Assert.Equal(8, files.Plots.Count);  // acc, auc, curves, validation; PNG and SVG each
        foreach (string png in files.Plots.Where(p => p.EndsWith(".png")))
        {
            var bytes = File.ReadAllBytes(png);
            Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A }, bytes[..8]);
            Assert.Equal("IHDR", System.Text.Encoding.ASCII.GetString(bytes, 12, 4));
            Assert.Equal(Plots.Width, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(16)));
            Assert.Equal(Plots.Height, BinaryPrimitives.ReadInt32BigEndian(bytes.AsSpan(20)));
            Assert.True(bytes.Length > 5_000, $"{png}: {bytes.Length} bytes, too few for a plot");
        }
        foreach (string svg in files.Plots.Where(p => p.EndsWith(".svg")))
        {
            var document = XDocument.Load(svg);
            Assert.Equal("svg", document.Root!.Name.LocalName);
            Assert.Contains("10%", File.ReadAllText(Path.ChangeExtension(files.Plots.First(p => p.EndsWith("acc.svg")), ".svg")));
        }
    }

    [Fact]
    public void HalvesDrawTrainingAndValidationFromTheTrainingSplit()
    {
        using var data = EvaluationData.Phantom(Spec, Path.Combine(Repo.TestHome, "phantom"));
        var spec = ProtocolSpec.SeedTalkHalves;
        Assert.Equal([0.2, 0.5, 1.0], spec.Fractions);
        Assert.Equal(6, spec.Seeds);
        var plan = spec.Plan(data, Initialisation.Random, new CellKey("random init", 0.2, 1));
        var full = spec.Plan(data, Initialisation.Random, new CellKey("random init", 1.0, 1));
        Assert.Same(data.Train, plan.Validation);
        Assert.Equal(100, full.TrainIndices.Length);
        Assert.Equal(100, full.ValidationIndices.Length);
        Assert.Empty(full.TrainIndices.Intersect(full.ValidationIndices));
        Assert.Equal(20, plan.TrainIndices.Length);
        Assert.Subset(full.TrainIndices.ToHashSet(), plan.TrainIndices.ToHashSet());
        Assert.Equal(4 * 3 * 6, spec.Cells([Initialisation.Random, new Initialisation("b", "/x"), new Initialisation("c", "/y"), new Initialisation("d",
            "/z")]).Count());
        var fractions = ProtocolSpec.MedMnistFractions.Plan(data, Initialisation.Random, new CellKey("random init", 0.1, 0));
        Assert.Same(data.Validation, fractions.Validation);
        Assert.Equal(60, fractions.ValidationIndices.Length);
        Assert.Equal(20, fractions.TrainIndices.Length);
    }
}
