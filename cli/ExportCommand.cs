using System.CommandLine;
using Medformer.Training;
using Medformer.Runtime;
using Medformer.Tracking.Interop;
using static TorchSharp.torch;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer export CHECKPOINT --out DIR</c>: a model folder or training checkpoint (or a run folder: its latest
/// checkpoint) as a folder PyTorch users load with safetensors: config.json, model.safetensors (float32, contiguous),
/// medformer.py and a README. --out is checked first (<see cref="OutputFolder"/>). Exit status 0 done, 1 a bad checkpoint, 2 bad arguments.
/// </summary>
static class ExportCommand
{
    public static Command Create()
    {
        var source = new Argument<string>("CHECKPOINT") { Description = "A model folder or training checkpoint (config.json + model.safetensors), or a run folder." };
        var output = new Option<string>("--out") { Description = "The folder to write; an earlier export there is replaced whole. " + OutputOption.Rule, Required = true };
        var force = OutputOption.Force();
        var command = new Command("export", "Write a checkpoint as a folder PyTorch loads: config.json, model.safetensors (fp32), medformer.py, README.md.");
        command.Arguments.Add(source);
        command.Options.Add(output);
        command.Options.Add(force);
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
            using var model = Checkpoint.Load(folder);
            using var scope = NewDisposeScope();
            var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach().to(ScalarType.Float32).contiguous());
            claimed.Write(staging => Checkpoint.WriteFiles(model.Config, weights, staging, new Dictionary<string, string> { ["exported_from"] = Path.GetFullPath(folder) },
                PyTorchExport.Extras(Path.GetFullPath(folder), model.ParameterCount())));
            Console.WriteLine($"{target}: {weights.Count} tensors, {model.ParameterCount():N0} parameters, float32; load with safetensors + medformer.py (see its README.md)");
            return ExitCodes.Done;
        });
        return command;
    }
}
