using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Cli;

/// <summary><c>medformer predict --checkpoint DIR INPUT…</c>: a fine-tuned model's predictions for npz, NIfTI and DICOM inputs.</summary>
static class PredictCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description =
            "A fine-tuned model folder (as medformer finetune writes it: model/) or a hub name.", Required = true };
        var inputs = new Argument<string[]>("INPUT") { Description =
            "Files to predict: .npz (MedMNIST layout or one array), NIfTI, DICOM (file or series folder), .npy.",
            Arity = ArgumentArity.OneOrMore };
        var output = new Option<string>("--out") { Description = "Output folder. " + OutputOption.Rule, DefaultValueFactory = _ => Path.Combine("runs",
            "predict") };
        var force = OutputOption.Force();
        var split = new Option<string>("--split") { Description = "The split of a MedMNIST-layout .npz (SPLIT_images).", DefaultValueFactory = _ => "test" };
        var device = new Option<string>("--device") { Description = "cpu or cuda[:N].", DefaultValueFactory = _ => DeviceSpec.DefaultSpec };
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var command = new Command("predict", "Predict with a fine-tuned model: class probabilities (JSON and CSV), masks (NIfTI) or images (NIfTI and PNG).");
        command.Arguments.Add(inputs);
        foreach (var option in new Option[] { checkpoint, output, force, split, device, json }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output, force, "predict");
            TorchRuntime.EnsureLoaded();
            string outDir = parse.GetValue(output)!;
            using var tuner = FineTuner.Load(parse.GetValue(checkpoint)!, DeviceSpec.Resolve(parse.GetValue(device)));
            claimed.Mark();
            // One branch per kind of head output.
            var written = tuner.Head.Output switch
            {
                HeadOutput.Probabilities => WriteProbabilities(tuner, parse.GetValue(inputs)!, parse.GetValue(split)!, outDir),
                _ => WriteDense(tuner, parse.GetValue(inputs)!, parse.GetValue(split)!, outDir),
            };
            if (parse.GetValue(json))
                Console.WriteLine(written.ToJsonString());
            else
                foreach (var file in written["files"]!.AsArray()) Console.WriteLine($"wrote {file}");
            return ExitCodes.Done;
        });
        return command;
    }

    /// <summary>predictions.json (per input and image: the predicted class and each class's probability) and predictions.csv.</summary>
    static JsonObject WriteProbabilities(FineTuner tuner, IEnumerable<string> inputs, string split, string outDir)
    {
        var batches = new List<PredictionBatch>();
        try
        {
            foreach (string input in inputs)
            {
                batches.Add(PredictionInputs.Read(input, tuner.InputShape, split));
                if (tuner.InputRange?.Mismatch(input, batches[^1].Images) is { } far) Warn(far);
            }
            return WriteProbabilities(tuner, batches, outDir);
        }
        finally
        {
            foreach (var batch in batches) batch.Dispose();
        }
    }

    static JsonObject WriteProbabilities(FineTuner tuner, IReadOnlyList<PredictionBatch> batches, string outDir)
    {
        var rows = new JsonArray();
        var csv = new StringBuilder();
        IReadOnlyList<string>? names = tuner.ClassNames;
        foreach (var batch in batches)
        {
            using var probabilities = tuner.Predict(batch.Images, batch.Metas);
            int classes = (int)probabilities.shape[1];
            names ??= [.. Enumerable.Range(0, classes).Select(k => k.ToString(CultureInfo.InvariantCulture))];
            if (csv.Length == 0) csv.AppendLine(string.Join(",", new[] { "input", "index", "predicted" }.Concat(names.Select(Csv))));
            var values = probabilities.data<float>().ToArray();
            for (int i = 0; i < batch.Metas.Count; i++)
            {
                var row = values[(i * classes)..((i + 1) * classes)];
                int best = Array.IndexOf(row, row.Max());
                rows.Add(new JsonObject
                {
                    ["input"] = batch.File, ["index"] = i, ["predicted"] = names[best],
                    ["probabilities"] = new JsonObject([.. names.Select((n, k) => KeyValuePair.Create(n, (JsonNode?)Math.Round(row[k], 6)))]),
                });
                csv.AppendLine(string.Join(",", new[] { Csv(batch.File), i.ToString(CultureInfo.InvariantCulture), Csv(names[best]) }
                    .Concat(row.Select(p => p.ToString("G6", CultureInfo.InvariantCulture)))));
            }
        }
        string jsonPath = Path.Combine(outDir, "predictions.json"), csvPath = Path.Combine(outDir, "predictions.csv");
        var document = new JsonObject { ["classes"] = new JsonArray([.. names!.Select(n => (JsonNode)n)]), ["predictions"] = rows };
        File.WriteAllText(jsonPath, document.ToJsonString(new() { WriteIndented = true }));
        File.WriteAllText(csvPath, csv.ToString());
        return new JsonObject { ["files"] = new JsonArray(Path.GetFullPath(jsonPath), Path.GetFullPath(csvPath)), ["predictions"] = rows.Count };
    }

    /// <summary>
    /// Masks (NIfTI) or images (NIfTI with a PNG preview) on each input's grid (<see cref="DensePredictions"/>): an
    /// input of the training input's shape whole, any other by sliding windows of that extent.
    /// </summary>
    static JsonObject WriteDense(FineTuner tuner, IReadOnlyList<string> inputs, string split, string outDir) =>
        new() { ["files"] = new JsonArray([.. DensePredictions.Write(tuner, inputs, outDir, split, warn: Warn).Select(f => (JsonNode)f)]) };

    /// <summary>One line on stderr: the input is far from what the model was trained on (the predictions are still written).</summary>
    static void Warn(string message) => Console.Error.WriteLine($"medformer predict: warning: {message}");

    static string Csv(string text) => text.IndexOfAny([',', '"', '\n']) >= 0 ? $"\"{text.Replace("\"", "\"\"")}\"" : text;
}
