using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Nodes;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking.Interop;
using static TorchSharp.torch;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer export CHECKPOINT --out DIR</c>: a model folder or training checkpoint (or a run folder: its latest
/// checkpoint) as a folder PyTorch users load: config.json, model.safetensors (float32, contiguous), medformer.py,
/// safetensors_load.py and a README; a fine-tuned model's head (head.json, head.safetensors); with <c>--format pt</c>
/// also model.pt, as torch.save writes a state_dict. --out is checked first (<see cref="OutputFolder"/>). Exit status 0 done, 1 a bad checkpoint, 2 bad
/// arguments.
/// </summary>
static class ExportCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("CHECKPOINT") { Description =
            "A model folder or training checkpoint (config.json + model.safetensors), or a run folder." };
        var output = new Option<string>("--out") { Description = "The folder to write; an earlier export there is replaced whole. " + OutputOption.Rule,
            Required = true };
        var force = OutputOption.Force();
        var format = new Option<string>("--format")
        {
            Description = "safetensors (default): the folder; pt: the folder and model.pt, a torch.save state_dict that torch.load reads.",
            DefaultValueFactory = _ => "safetensors",
        };
        format.AcceptOnlyFromAmong("safetensors", "pt");
        var command = new Command("export",
            "Write a checkpoint as a folder PyTorch loads: config.json, model.safetensors (fp32), medformer.py, README.md (and model.pt with --format pt).");
        command.Arguments.Add(source);
        command.Options.Add(output);
        command.Options.Add(force);
        command.Options.Add(format);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output, force, "export");
            TorchRuntime.EnsureLoaded();
            string folder = parse.GetValue(source)!;
            string target = parse.GetValue(output)!;
            if (!File.Exists(Path.Combine(folder, Checkpoint.ConfigFile)) && TrainingCheckpoint.Latest(folder) is { } latest)
            {
                Console.WriteLine($"{folder}: a run folder; exporting its latest checkpoint {latest}");
                folder = latest;
            }
            bool torchSave = parse.GetValue(format) == "pt";
            using var model = Checkpoint.Load(folder);
            using var scope = NewDisposeScope();
            var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(ScalarType.Float32).contiguous());
            var head = Head(folder);
            claimed.Write(staging => Checkpoint.WriteFiles(model.Config, weights, staging, new Dictionary<string,
                string> { ["exported_from"] = Path.GetFullPath(folder) },
                PyTorchExport.Extras(Path.GetFullPath(folder), model.ParameterCount(), weights, head, torchSave)));
            Console.WriteLine($"{target}: {weights.Count} tensors, {model.ParameterCount():N0} parameters, float32"
                              + (head is null ? "" : $", with its {head.Kind} head ({head.Weights.Count} tensors)")
                              + (torchSave ? $"; {PyTorchExport.TorchFile} for torch.load" : "") + "; load with medformer.py (see its README.md)");
            if (head is { HasTwin: false })
                Console.WriteLine($"note: medformer.py has no class for the {head.Kind} head (it has " +
                    $"{string.Join(", ", PyTorchExport.TwinnedHeads.Order())}); its weights and head.json are exported for " +
                        "your own code, and FineTuned refuses it");
            return ExitCodes.Done;
        });
        return command;
    }

    /// <summary>
    /// A fine-tuned model's head (head.json beside the weights), loaded as predict loads it; null for a pretrained model.
    /// A kind this build does not know (a custom head, registered by the program that trained it) is exported as its
    /// files hold it: head.json and the weights of head.safetensors, with the one-line note that medformer.py has no class for it.
    /// </summary>
    static ExportedHead? Head(string folder)
    {
        string description = Path.Combine(folder, "head.json");
        if (!File.Exists(description)) return null;
        byte[] bytes = File.ReadAllBytes(description);
        string? kind = null;
        try
        {
            kind = (JsonNode.Parse(bytes) as JsonObject) is { } json ? HeadRegistry.Text(json, "kind") : null;
        }
        catch (JsonException)
        {
            // FineTuner.Load below names the file and what is wrong with it.
        }
        if (kind is not null && !HeadRegistry.Kinds.Contains(kind))
        {
            string path = Path.Combine(folder, "head.safetensors");
            if (!File.Exists(path)) throw new InvalidDataException($"{path}: missing (the {kind} head's weights)");
            var stored = Safetensors.Load(path).ToDictionary(kv => kv.Key, kv => kv.Value.to(ScalarType.Float32).contiguous());
            return new ExportedHead(kind, bytes, stored);
        }
        using var tuner = FineTuner.Load(folder);
        var weights = tuner.Head.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(ScalarType.Float32).contiguous());
        return new ExportedHead(tuner.Head.Kind, bytes, weights);
    }
}
