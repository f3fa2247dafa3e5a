using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer;

/// <summary>
/// A model checkpoint folder, as Hugging Face users expect: <c>config.json</c> and <c>model.safetensors</c> with
/// PyTorch-style dotted keys. Written whole or not at all: into a temporary sibling folder, fsynced, then renamed.
/// </summary>
public static class Checkpoint
{
    public const string ConfigFile = "config.json";
    public const string WeightsFile = "model.safetensors";

    /// <summary>Writes the model's config and weights to <paramref name="directory"/>, replacing what was there.</summary>
    public static void Save(MedformerModel model, string directory, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var scope = NewDisposeScope();
        Save(model.Config, model.state_dict().ToDictionary(kv => kv.Key, kv => kv.Value.detach()), directory, metadata);
    }

    /// <summary>
    /// Writes a config and named weights (e.g. a trainer's fp32 master weights, when the model itself runs in bf16)
    /// as a checkpoint folder, replacing what was there. <paramref name="extraFiles"/> (name → writer) adds files to
    /// the same atomic write, as a training checkpoint's optimizer and trainer state.
    /// </summary>
    public static void Save(MedformerConfig config, IReadOnlyDictionary<string, Tensor> weights, string directory,
        IReadOnlyDictionary<string, string>? metadata = null, IReadOnlyDictionary<string, Action<string>>? extraFiles = null)
    {
        AtomicDirectory.Write(directory, staging => WriteFiles(config, weights, staging, metadata, extraFiles));
    }

    /// <summary>
    /// The files of a checkpoint folder written into <paramref name="folder"/> as they are, for a caller that makes
    /// the write atomic its own way (a command's --out: <see cref="OutputFolder.Write"/>).
    /// </summary>
    public static void WriteFiles(MedformerConfig config, IReadOnlyDictionary<string, Tensor> weights, string folder,
        IReadOnlyDictionary<string, string>? metadata = null, IReadOnlyDictionary<string, Action<string>>? extraFiles = null)
    {
        File.WriteAllText(Path.Combine(folder, ConfigFile), config.ToJson());
        using var scope = NewDisposeScope();
        var cpu = weights.ToDictionary(kv => kv.Key, kv => kv.Value.detach().cpu());
        var meta = new Dictionary<string, string>(metadata ?? new Dictionary<string, string>()) { ["format"] = "pt" };
        Safetensors.Save(cpu, Path.Combine(folder, WeightsFile), meta);
        foreach (var (name, write) in extraFiles ?? new Dictionary<string, Action<string>>()) write(Path.Combine(folder, name));
    }

    /// <summary>The config stored in a checkpoint folder.</summary>
    public static MedformerConfig ReadConfig(string directory)
    {
        string path = Path.Combine(RequireDirectory(directory), ConfigFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory}: not a Medformer checkpoint (no {ConfigFile})");
        return MedformerConfig.Load(path);
    }

    /// <summary>A model built from the checkpoint's config with its weights.</summary>
    public static MedformerModel Load(string directory, Device? device = null)
    {
        var config = ReadConfig(directory);
        CheckSize(config, directory);
        var model = new MedformerModel(config);
        try
        {
            LoadWeights(model, directory);
            if (device is not null) model.to(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loads a checkpoint's weights into <paramref name="model"/> (<see cref="StrictLoad"/>), whose bank vocabularies
    /// may be a superset of the checkpoint's: banks the checkpoint lacks keep their initialisation and are returned.
    /// Anything else missing, an unexpected key or a shape that differs is an error naming the file and the keys.
    /// </summary>
    public static IReadOnlyList<string> LoadWeights(MedformerModel model, string directory)
    {
        string path = Path.Combine(RequireDirectory(directory), WeightsFile);
        if (!File.Exists(path)) throw new InvalidDataException($"{directory}: not a Medformer checkpoint (no {WeightsFile})");
        return StrictLoad.Load(path, model.state_dict(), "the model", IsBank);
    }

    // Before the model is built: a config.json that describes a model far larger than the weights beside it (a
    // hostile or mismatched one) is refused without allocating it. The block parameters are a lower bound.
    static void CheckSize(MedformerConfig config, string directory)
    {
        string path = Path.Combine(directory, WeightsFile);
        if (!File.Exists(path)) return;
        using var file = SafetensorsFile.Open(path);
        long stored = file.Tensors.Sum(t => t.ElementCount);
        if (config.BlockParameters > stored + (1 << 20))
            throw new InvalidDataException($"{Path.Combine(directory, ConfigFile)}: describes a model of at least {config.BlockParameters:0} parameters, " +
                $"but {path} holds {stored}; not built");
    }

    // A bank that a newer vocabulary added: latents.<kind>.<name> (not the general latents).
    static bool IsBank(string key) => key.StartsWith("latents.", StringComparison.Ordinal) && key.Count(c => c == '.') == 2;

    static string RequireDirectory(string directory) =>
        Directory.Exists(directory) ? directory : throw new DirectoryNotFoundException($"{directory}: no such checkpoint folder");
}
