using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Cli;

/// <summary><c>medformer inspect FILE [--json]</c>: a medical file's header, geometry and voxel statistics, as nib-ls or dcmdump tell.</summary>
static class InspectCommand
{
    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description =
            "A NIfTI (.nii, .nii.gz, .hdr), DICOM (.dcm or a series folder), .npy or .npz file (every array; MedMNIST's layout with its splits and classes)." };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var subset = new Option<string?>("--subset") { Description =
            "An .npz in MedMNIST's layout: the subset it holds, where its file name does not say (as npz:FILE,subset=NAME in --task)." };
        var command = new Command("inspect", "Show a medical file's header, shape, spacing, dtype and voxel statistics (an .npz: each array's).");
        command.Arguments.Add(file);
        command.Options.Add(json);
        command.Options.Add(subset);
        command.SetAction(parse =>
        {
            string path = parse.GetValue(file)!;
            MedMnistSubset? named = parse.GetValue(subset) is { } name
                ? MedMnistRegistry.Default.TryGet(name, out var known) ? known
                    : throw new ArgumentException($"--subset '{name}': not a MedMNIST subset ({string.Join(", ", MedMnistRegistry.Default.Names)})")
                : null;
            bool npz = path.EndsWith(".npz", StringComparison.OrdinalIgnoreCase) && File.Exists(path);
            if (named is not null && !npz) throw new ArgumentException($"--subset: {path} is not an .npz");
            TorchRuntime.EnsureLoaded();
            if (npz) return InspectNpz(path, named, parse.GetValue(json));
            using var volume = MedicalFile.Read(path);
            var report = Report(volume);
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(report, JsonOptions));
            else
                Print(report, volume);
            return ExitCodes.Done;
        });
        return command;
    }

    /// <summary>An .npz: every array (name, shape, dtype, statistics), one at a time; MedMNIST's layout with its subset, splits and classes.</summary>
    static int InspectNpz(string path, MedMnistSubset? subset, bool json)
    {
        var arrays = NpzArrays.Read(path);
        var layout = NpzArrays.Layout(path, arrays, subset);
        if (json)
        {
            var report = new JsonObject
            {
                ["file"] = path,
                ["format"] = "npz",
                ["arrays"] = new JsonArray([.. arrays.Select(a => (JsonNode)new JsonObject
                {
                    ["name"] = a.Name, ["shape"] = new JsonArray([.. a.Shape.Select(n => (JsonNode)n)]), ["dtype"] = a.Dtype, ["descr"] = a.Descr,
                    ["statistics"] = Statistics(a.Statistics),
                })]),
                ["medmnist"] = layout is null ? null : new JsonObject
                {
                    ["subset"] = layout.Subset?.Name, ["task"] = layout.Subset?.Task,
                    ["classes"] = layout.Subset is { } s ? new JsonArray([.. s.Labels.Select(l => (JsonNode)l)]) : null,
                    ["splits"] = new JsonObject([.. layout.Splits.Select(p => KeyValuePair.Create(p.Key, (JsonNode?)p.Value))]),
                },
            };
            Console.WriteLine(report.ToJsonString(new JsonSerializerOptions(JsonOptions)));
            return ExitCodes.Done;
        }
        var inv = CultureInfo.InvariantCulture;
        Console.WriteLine($"{path}  (NumPy .npz, {arrays.Count} array{(arrays.Count == 1 ? "" : "s")})");
        if (layout is not null)
        {
            string splits = string.Join(", ", layout.Splits.Select(p => $"{p.Key} {p.Value.ToString("N0", inv)}"));
            Console.WriteLine(layout.Subset is { } s
                ? $"  MedMNIST layout: {s.Name} ({s.Task}, {s.Labels.Count} classes); {splits}"
                : $"  MedMNIST layout, subset unknown (name it: --subset NAME, or npz:{path},subset=NAME in --task); {splits}");
        }
        string G(double v) => v.ToString("G6", inv);
        var rows = arrays.Select(a => new[] { a.Name, $"[{string.Join(", ", a.Shape)}]", a.Dtype, G(a.Statistics.Min), G(a.Statistics.Max),
            G(a.Statistics.Mean), G(a.Statistics.Std) }).ToList();
        string[] titles = ["array", "shape", "dtype", "min", "max", "mean", "std"];
        int[] widths = [.. titles.Select((t, i) => rows.Select(r => r[i].Length).Append(t.Length).Max())];
        foreach (var row in rows.Prepend(titles)) Console.WriteLine("  " + string.Join("  ", row.Select((c, i) => c.PadRight(widths[i]))).TrimEnd());
        return ExitCodes.Done;
    }

    static JsonObject Statistics(VoxelStatistics stats) => new()
    {
        ["min"] = stats.Min, ["max"] = stats.Max, ["mean"] = stats.Mean, ["std"] = stats.Std, ["sum"] = stats.Sum, ["nonzero"] = stats.NonZero,
    };

    static readonly JsonSerializerOptions JsonOptions = new()
    {
        // NaN voxels (or none at all) give NaN statistics: written as "NaN", not a serializer's exception.
        Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.AllowNamedFloatingPointLiterals,
    };

    static Dictionary<string, object> Report(MedicalVolume volume)
    {
        var stats = VoxelStatistics.Of(volume.Voxels);
        var affine = new double[4][];
        for (int i = 0; i < 4; i++) affine[i] = [.. Enumerable.Range(0, 4).Select(j => volume.Affine[i, j])];
        return new()
        {
            ["file"] = volume.SourceFile,
            ["shape"] = volume.Voxels.shape,
            ["dtype"] = volume.StoredType,
            ["tensor_dtype"] = volume.Voxels.dtype.ToString().ToLowerInvariant(),
            ["spacing"] = volume.Spacing,
            ["affine"] = affine,
            ["frame"] = volume.Frame,
            ["statistics"] = new Dictionary<string, double>
            {
                ["min"] = stats.Min,
                ["max"] = stats.Max,
                ["mean"] = stats.Mean,
                ["std"] = stats.Std,
                ["sum"] = stats.Sum,
                ["nonzero"] = stats.NonZero,
            },
            ["header"] = HeaderObject(volume.Header),
        };
    }

    /// <summary>The header as a JSON object in file order, as nib-ls shows it; a key met again (a DICOM sequence's items) holds an array of its
    /// values.</summary>
    static System.Text.Json.Nodes.JsonObject HeaderObject(IEnumerable<KeyValuePair<string, string>> header)
    {
        var json = new System.Text.Json.Nodes.JsonObject();
        foreach (var (key, value) in header)
        {
            if (!json.TryGetPropertyValue(key, out var seen)) json[key] = value;
            else if (seen is System.Text.Json.Nodes.JsonArray values) values.Add(value);
            else json[key] = new System.Text.Json.Nodes.JsonArray(seen!.DeepClone(), value);
        }
        return json;
    }

    static void Print(Dictionary<string, object> report, MedicalVolume volume)
    {
        var inv = CultureInfo.InvariantCulture;
        var stats = (Dictionary<string, double>)report["statistics"];
        Console.WriteLine($"{volume.SourceFile}");
        Console.WriteLine($"  shape    [{string.Join(", ", volume.Voxels.shape)}]  ({volume.StoredType} → {report["tensor_dtype"]})");
        Console.WriteLine($"  spacing  {string.Join(" × ", volume.Spacing.Select(s => s.ToString("G6", inv)))} mm");
        Console.WriteLine($"  values   min {stats["min"].ToString("G6", inv)}  max {stats["max"].ToString("G6", inv)}  mean " +
            $"{stats["mean"].ToString("G6", inv)}  std " +
            $"{stats["std"].ToString("G6", inv)}  nonzero {stats["nonzero"]}");
        Console.WriteLine($"  affine   ({volume.Frame})");
        for (int i = 0; i < 4; i++)
            Console.WriteLine("           " + string.Join("  ", Enumerable.Range(0, 4).Select(j => volume.Affine[i, j].ToString("F4", inv).PadLeft(11))));
        Console.WriteLine("  header");
        int width = volume.Header.Count == 0 ? 0 : volume.Header.Max(p => p.Key.Length);
        foreach (var (key, value) in volume.Header) Console.WriteLine($"    {key.PadRight(width)}  {value}");
    }
}
