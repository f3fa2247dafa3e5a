using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// The one strict weight loader: a safetensors file into named tensors, as PyTorch's
/// <c>load_state_dict(strict=True)</c>. Every target must be in the file (unless <c>mayBeMissing</c> says it may
/// keep its value), every tensor of the file must have a target, of the target's shape, and of a dtype of the same
/// kind (a floating tensor into a floating target, converted as <c>copy_</c> converts, e.g. a bf16 file into fp32
/// weights). The header is checked whole before any weight is read or written, so a refused file changes nothing,
/// and the refusal is one line naming the file and, in PyTorch's order, the missing keys, the unexpected keys and
/// the mismatches:
/// <code>
/// ckpt/model.safetensors: cannot load into the model: missing key(s) 'blocks.2.attn.qkv.weight', …; unexpected
/// key(s) 'extra'; size mismatch for 'head.weight': [3, 8] in the checkpoint but [4, 8] in the model
/// </code>
/// (one line; wrapped here).
/// </summary>
public static class StrictLoad
{
    /// <summary>Keys named in one part of the message before "and N more".</summary>
    const int Named = 8;

    /// <summary>
    /// Copies the tensors of <paramref name="path"/> into <paramref name="targets"/> (name → parameter or buffer)
    /// without recording gradients, and returns the targets the file lacked that <paramref name="mayBeMissing"/>
    /// allowed (they keep their values). <paramref name="owner"/> names what the targets belong to in the error
    /// ("the model", "this ClassificationHead").
    /// </summary>
    public static IReadOnlyList<string> Load(string path, IReadOnlyDictionary<string, Tensor> targets, string owner,
        Func<string, bool>? mayBeMissing = null)
    {
        if (!File.Exists(path)) throw new InvalidDataException($"{path}: no such file (the weights of {owner})");
        using var file = SafetensorsFile.Open(path);
        var (allowed, fault) = Check(file.Tensors, targets, owner, mayBeMissing);
        if (fault is not null) throw new InvalidDataException($"{path}: cannot load into {owner}: {fault}");
        using (torch.no_grad())
            foreach (var info in file.Tensors)
            {
                using var stored = file.GetTensor(info.Name);
                targets[info.Name].copy_(stored);
            }
        return allowed;
    }

    /// <summary>
    /// What <see cref="Load"/> would refuse, from the header alone: the missing targets it would allow, and the
    /// fault (null when the file fits).
    /// </summary>
    static (IReadOnlyList<string> AllowedMissing, string? Fault) Check(IReadOnlyList<SafetensorsTensorInfo> stored,
        IReadOnlyDictionary<string, Tensor> targets, string owner, Func<string, bool>? mayBeMissing = null)
    {
        var byName = stored.ToDictionary(t => t.Name, StringComparer.Ordinal);
        var absent = targets.Keys.Where(k => !byName.ContainsKey(k)).ToList();
        var allowed = absent.Where(k => mayBeMissing?.Invoke(k) == true).ToList();
        var missing = absent.Except(allowed).ToList();
        var unexpected = stored.Where(t => !targets.ContainsKey(t.Name)).Select(t => t.Name).ToList();
        var mismatches = new List<string>();
        foreach (var (name, target) in targets)  // in the targets' order, as PyTorch reports them
        {
            if (!byName.TryGetValue(name, out var info)) continue;
            if (!target.shape.SequenceEqual(info.Shape))
                mismatches.Add($"size mismatch for '{info.Name}': {Shape(info.Shape)} in the checkpoint but {Shape(target.shape)} in {owner}");
            else if (DtypeFault(info, target, owner) is { } dtype)
                mismatches.Add($"dtype mismatch for '{info.Name}': {dtype}");
        }
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"missing key(s) {List(missing)}");
        if (unexpected.Count > 0) parts.Add($"unexpected key(s) {List(unexpected)}");
        parts.AddRange(mismatches.Take(Named));
        if (mismatches.Count > Named) parts.Add($"and {mismatches.Count - Named} more mismatch(es)");
        return (allowed, parts.Count == 0 ? null : string.Join("; ", parts));
    }

    // A floating tensor converts into a floating target (fp32 ↔ bf16 ↔ fp16); anything else must match in kind.
    static string? DtypeFault(SafetensorsTensorInfo info, Tensor target, string owner)
    {
        if (info.Dtype.ScalarType is not { } type) return $"{info.Dtype.Name} in the checkpoint has no torch dtype";
        bool floating = type is ScalarType.Float16 or ScalarType.BFloat16 or ScalarType.Float32 or ScalarType.Float64;
        if (floating == target.is_floating_point() && (floating || type == target.dtype)) return null;
        return $"{info.Dtype.Name} in the checkpoint but {target.dtype} in {owner}";
    }

    static string List(IReadOnlyList<string> keys) =>
        string.Join(", ", keys.Take(Named).Select(k => $"'{k}'")) + (keys.Count > Named ? $" and {keys.Count - Named} more" : "");

    static string Shape(IEnumerable<long> shape) => $"[{string.Join(", ", shape)}]";
}
