using System.CommandLine;
using Medformer.Runtime;
using Medformer.Tracking.Interop;
using TorchSharp;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer import FILE --config PRESET|config.json --out DIR</c>: a PyTorch state_dict (torch.save's .pt / .pth /
/// .bin / .ckpt, or .safetensors) mapped onto Medformer's names and written as a model folder. Exit status 0 done,
/// 1 a file that does not fit (names and shapes said), 2 bad arguments.
/// </summary>
static class ImportCommand
{
    const int Listed = 20;

    public static Command Create()
    {
        var file = new Argument<string>("FILE") { Description = "A state_dict saved by torch.save (.pt, .pth, .bin, .ckpt) or a .safetensors file." };
        var config = new Option<string>("--config") { Description = "The model it holds: a preset (tiny, small, base, large) or a config.json.",
            Required = true };
        var output = new Option<string>("--out") { Description = "The model folder to write; an earlier import there is replaced whole. " + OutputOption.Rule,
            Required = true };
        var force = OutputOption.Force();
        var allowMissing = new Option<bool>("--allow-missing") { Description = "Keep the initialisation of weights the file lacks instead of failing." };
        var strict = new Option<bool>("--strict") { Description =
            "Fail on tensors of the file that the model has no place for (default: skip and list them)." };
        var command = new Command("import", "Turn a PyTorch state_dict (torch.save or safetensors) into a Medformer model folder.");
        command.Arguments.Add(file);
        foreach (var option in new Option[] { config, output, force, allowMissing, strict }) command.Options.Add(option);
        command.SetAction(parse =>
        {
            var claimed = OutputOption.Claim(parse, output, force, "import");
            TorchRuntime.EnsureLoaded();
            var modelConfig = ExitCodes.NamedByArgument(() => MedformerConfig.Resolve(parse.GetValue(config)!));
            string path = parse.GetValue(file)!;
            using var read = StateDictImport.Read(path);
            Console.WriteLine($"{path}: {read.Format}, {read.Tensors.Count} tensors" + (read.Wrapper != null ? $" in its \"{read.Wrapper}\"" : "")
                              + (read.Skipped.Count > 0 ? $"; {read.Skipped.Count} entries that are not tensors skipped" : ""));
            using var model = new MedformerModel(modelConfig);
            var own = model.state_dict();
            var match = StateDictImport.Match(read.Tensors, own.ToDictionary(kv => kv.Key, kv => kv.Value.shape));
            foreach (var prefix in match.Renamed.Select(kv => kv.Key[..^kv.Value.Length]).Distinct())
                Console.WriteLine($"stripped the prefix '{prefix}' ({match.Renamed.Count(kv => kv.Key.StartsWith(prefix, StringComparison.Ordinal))} names)");
            if (match.Unmatched.Count > 0)
                Console.WriteLine($"{match.Unmatched.Count} tensor(s) of the file have no place in the " +
                    $"model{(parse.GetValue(strict) ? "" : ", skipped")}: {List(match.Unmatched)}");
            var problems = new List<string>();
            if (match.ShapeMismatches.Count > 0) problems.Add($"{match.ShapeMismatches.Count} shape(s) differ: {List(match.ShapeMismatches)}");
            if (match.Missing.Count > 0 && !parse.GetValue(allowMissing))
                problems.Add($"the file lacks {match.Missing.Count} of the model's {own.Count} tensors (--allow-missing keeps their " +
                    $"initialisation): {List(match.Missing)}");
            if (match.Unmatched.Count > 0 && parse.GetValue(strict)) problems.Add("--strict: the file has tensors the model does not");
            if (problems.Count > 0) throw new InvalidDataException($"{path} does not fit the config: " + string.Join("; ", problems));

            using (torch.no_grad())
                foreach (var (name, tensor) in match.Matched) own[name].copy_(tensor);
            string target = parse.GetValue(output)!;
            using (var scope = torch.NewDisposeScope())
            {
                var weights = model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach());
                claimed.Write(staging => Checkpoint.WriteFiles(model.Config, weights, staging, new Dictionary<string,
                    string> { ["imported_from"] = Path.GetFullPath(path) }));
            }
            Console.WriteLine($"{target}: {match.Matched.Count} of {own.Count} tensors imported"
                              + (match.Missing.Count > 0 ? $", {match.Missing.Count} left at their initialisation" : ""));
            return ExitCodes.Done;
        });
        return command;
    }

    static string List(IReadOnlyList<string> names) =>
        string.Join(", ", names.Take(Listed)) + (names.Count > Listed ? $", … ({names.Count - Listed} more)" : "");
}
