using System.Collections;
using System.Globalization;
using System.Text;
using Medformer.Datasets.Corpora;
using Medformer.Pretrain;

namespace Medformer.Bench;

/// <summary>
/// The data of <c>bench/run pays</c>: MEDFORMER_PAYS_DATA, a folder in MNIST's layout (IDX files), a MedMNIST
/// <c>.npz</c> (or a downloaded subset's name), or the embedded phantom (<c>phantom:2d</c>, <c>phantom:3d</c>);
/// Fashion-MNIST when unset. Its train split is pretrained on and labelled from, its test split scored; no
/// setting is read from the test split.
/// </summary>
public sealed class PaysData : IDisposable
{
    readonly DataSplits splits;

    PaysData(DataSource source, DataSplits splits, long[] spatial)
    {
        Source = source;
        this.splits = splits;
        Spatial = spatial;
    }

    public DataSource Source { get; }
    public ICorpus Train => splits.Train;
    public ICorpus Test => splits.Test;
    /// <summary>A sample's spatial shape ([H,W] or [D,H,W]).</summary>
    public long[] Spatial { get; }

    /// <summary>A short name: the folder's or file's name, or phantom-2d / phantom-3d.</summary>
    public string Name => Source.Kind == DataKind.Phantom ? $"phantom-{Source.Source}"
        : Path.GetFileNameWithoutExtension(Path.TrimEndingDirectorySeparator(Source.Source));

    public override string ToString() => Source.ToString();

    public static PaysData FromEnvironment() => Open(Environment.GetEnvironmentVariable("MEDFORMER_PAYS_DATA") is { Length: > 0 } value ? value
        : MnistCorpus.FashionMnistFolder);

    /// <summary>Opens <paramref name="value"/>: a folder is MNIST's layout, anything else a data source (phantom:2d, medmnist:FILE.npz, …).</summary>
    public static PaysData Open(string value)
    {
        var source = Directory.Exists(value) ? new DataSource(DataKind.Mnist, value) : DataSource.Parse(value, argument: "MEDFORMER_PAYS_DATA");
        if (source.Kind is not (DataKind.Mnist or DataKind.MedMnist or DataKind.Phantom))
            throw new ArgumentException($"MEDFORMER_PAYS_DATA '{value}': an MNIST-layout folder, a MedMNIST .npz or the phantom, not {source.Kind}");
        var splits = source.OpenSplits("MEDFORMER_PAYS_DATA");
        try
        {
            if (splits.Train.Count == 0 || splits.Test.Count == 0)
                throw new ArgumentException($"MEDFORMER_PAYS_DATA '{value}': the train or test split is empty");
            using var first = splits.Train.Get(0);
            return new PaysData(source, splits, first.Image.shape[1..]);
        }
        catch
        {
            splits.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The run config to pretrain with: <paramref name="config"/> reading this data's train split alone, with
    /// MEDFORMER_PAYS_PRETRAIN_STEPS (the schedule's steps; warmup at most a tenth of them) and MEDFORMER_PAYS_STEM,
    /// MEDFORMER_PAYS_STEM_CHANNELS (the model's tokenizer; its config.json written to <paramref name="output"/>).
    /// </summary>
    public RunConfig RunConfigFor(RunConfig config, string output)
    {
        int size = (int)Spatial[^1];
        config = config with
        {
            Corpora = [Source.Kind switch
            {
                DataKind.Mnist => new CorpusEntry { Mnist = Source.Source },
                DataKind.MedMnist => new CorpusEntry { Medmnist = Source.Source, Size = Source.Size },
                _ => new CorpusEntry { Phantom = Source.Source, Size = Source.Size },
            }],
            Augment = config.Augment with { ImageSize = size, VolumeSize = size },
        };
        if (Environment.GetEnvironmentVariable("MEDFORMER_PAYS_PRETRAIN_STEPS") is { Length: > 0 } steps)
        {
            long maxSteps = long.Parse(steps, CultureInfo.InvariantCulture);
            config = config with
            {
                Schedule = config.Schedule with { MaxSteps = maxSteps, WarmupSteps = Math.Min(config.Schedule.WarmupSteps, maxSteps / 10) },
            };
        }
        string? stem = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STEM");
        string? channels = Environment.GetEnvironmentVariable("MEDFORMER_PAYS_STEM_CHANNELS");
        if (!string.IsNullOrEmpty(stem) || !string.IsNullOrEmpty(channels))
        {
            var model = MedformerConfig.Resolve(config.Model);
            model = model with
            {
                Stem = string.IsNullOrEmpty(stem) ? model.Stem : stem,
                StemChannels = string.IsNullOrEmpty(channels) ? model.StemChannels : int.Parse(channels, CultureInfo.InvariantCulture),
            };
            model.Validate("MEDFORMER_PAYS_STEM");
            string path = Path.Combine(output, "model-config.json");
            File.WriteAllText(path, model.ToJson());
            config = config with { Model = path };
        }
        config.Validate("MEDFORMER_PAYS_CONFIG");
        return config;
    }

    public void Dispose() => splits.Dispose();
}

/// <summary>
/// The table <c>bench/run pays</c> writes (Markdown): one row per method, a column per label fraction with the
/// test accuracy's mean ± std over seeds, the row's CPU-minutes, and the command that reproduces the row.
/// </summary>
public sealed class PaysTable(string data, IReadOnlyList<double> fractions)
{
    public sealed record Row(string Name, string Method)
    {
        public Dictionary<double, List<double>> Accuracies { get; } = [];
        public Dictionary<double, double> CpuMinutes { get; } = [];
    }

    readonly List<Row> rows = [];

    public IReadOnlyList<Row> Rows => rows;

    public void Add(string name, string method, double fraction, double accuracy, double cpuMinutes)
    {
        var row = rows.FirstOrDefault(r => r.Name == name) ?? Append(new Row(name, method));
        (row.Accuracies.TryGetValue(fraction, out var list) ? list : row.Accuracies[fraction] = []).Add(accuracy);
        row.CpuMinutes[fraction] = row.CpuMinutes.GetValueOrDefault(fraction) + cpuMinutes;
    }

    Row Append(Row row)
    {
        rows.Add(row);
        return row;
    }

    /// <summary>The shell prefix that reproduces this run: every MEDFORMER_PAYS_* variable set, but the output's.</summary>
    public static string Command(IDictionary environment)
    {
        var settings = environment.Keys.Cast<string>()
            .Where(k => k.StartsWith("MEDFORMER_PAYS_", StringComparison.Ordinal) && k is not ("MEDFORMER_PAYS_METHODS" or "MEDFORMER_PAYS_OUT" or
                "MEDFORMER_PAYS_TABLE"))
            .Order(StringComparer.Ordinal)
            .Select(k => $"{k}={Quote((string)environment[k]!)}");
        return string.Join(' ', settings);
    }

    static string Quote(string value) => value.All(c => char.IsAsciiLetterOrDigit(c) || "/._-:,=+".Contains(c)) ? value : $"'{value.Replace("'", "'\\''")}'";

    public string Markdown(string command, double pretrainCpuMinutes, string stem)
    {
        var text = new StringBuilder();
        int seeds = rows.SelectMany(r => r.Accuracies.Values).Select(v => v.Count).DefaultIfEmpty(0).Max();
        text.AppendLine($"**{data}**, test accuracy in %, mean ± std over {seeds} seed(s); Medformer's tokenizer: {stem}"
            + (pretrainCpuMinutes > 0 ? $"; pretraining {pretrainCpuMinutes:F1} CPU-min" : "") + ".");
        text.AppendLine();
        text.AppendLine($"| method | {string.Join(" | ", fractions.Select(f => $"{f * 100:0.#}% of the labels"))} | CPU-min | command |");
        text.AppendLine($"| --- | {string.Join(" | ", fractions.Select(_ => "---"))} | --- | --- |");
        foreach (var row in rows)
        {
            var cells = fractions.Select(f => row.Accuracies.TryGetValue(f, out var v)
                ? $"{v.Average() * 100:F1} ± {PaysExperiment.Std(v) * 100:F1}" + (v.Count > 1
                    ? $" ({string.Join(", ", v.Select(x => (x * 100).ToString("F1", CultureInfo.InvariantCulture)))})" : "")
                : "");
            string reproduce = $"`{command} MEDFORMER_PAYS_METHODS={row.Method} bench/run pays`".Replace("  ", " ");
            text.AppendLine($"| {row.Name} | {string.Join(" | ", cells)} | {row.CpuMinutes.Values.Sum():F1} | {reproduce} |");
        }
        return text.ToString();
    }
}
