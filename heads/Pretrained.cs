using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// Loads a pretrained Medformer to fine-tune: a checkpoint folder (config.json + model.safetensors), or a hub name
/// through <see cref="NameResolver"/>, the single hook by which the checkpoint hub turns a name into a local folder
/// (downloaded and verified). New task banks can be added on load: the bank vocabularies are config lists, and the
/// weights of a checkpoint load into a model whose vocabularies are a superset (the new banks keep their
/// initialisation).
/// </summary>
public static class Pretrained
{
    /// <summary>Hub name → local checkpoint folder; null until the hub registers itself (then only folders load).</summary>
    public static Func<string, string>? NameResolver { get; set; }

    /// <summary>A checkpoint folder for <paramref name="folderOrName"/>: the folder itself if it exists, else what <see cref="NameResolver"/> gives.</summary>
    public static string Resolve(string folderOrName)
    {
        if (Directory.Exists(folderOrName)) return folderOrName;
        bool looksLikeName = !folderOrName.Contains('/') && !folderOrName.Contains(Path.DirectorySeparatorChar);
        if (looksLikeName && NameResolver is { } resolve) return resolve(folderOrName);
        throw new DirectoryNotFoundException(looksLikeName && NameResolver is null
            ? $"{folderOrName}: no such checkpoint folder (and no checkpoint hub to resolve it as a name)"
            : $"{folderOrName}: no such checkpoint folder");
    }

    /// <summary>The model of a checkpoint, with task banks <paramref name="tasks"/> added where its config lacks them.</summary>
    public static MedformerModel Load(string folderOrName, IEnumerable<string>? tasks = null, Device? device = null)
    {
        string folder = Resolve(folderOrName);
        var config = WithTasks(Checkpoint.ReadConfig(folder), tasks ?? []);
        var model = new MedformerModel(config);
        try
        {
            Checkpoint.LoadWeights(model, folder);
            if (device is not null) model.to(device);
            return model;
        }
        catch
        {
            model.Dispose();
            throw;
        }
    }

    /// <summary>The config with each of <paramref name="tasks"/> appended to its task banks where missing.</summary>
    public static MedformerConfig WithTasks(MedformerConfig config, IEnumerable<string> tasks)
    {
        var added = tasks.Where(t => !config.Tasks.Contains(t)).Distinct().ToList();
        if (added.Count == 0) return config;
        var extended = config with { Tasks = [.. config.Tasks, .. added] };
        extended.Validate($"task banks [{string.Join(", ", added)}]");
        return extended;
    }
}
