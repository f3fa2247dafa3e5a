using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Tracking.Interop;

/// <summary>A state_dict read from a file: names to tensors (the caller owns them) and what was left aside.</summary>
/// <param name="Wrapper">The key of the dict the weights sat in (Lightning's "state_dict"), or null for a bare state_dict.</param>
/// <param name="Skipped">Entries that are not tensors (Lightning's epoch, an `_extra_state`), by name.</param>
public sealed record StateDictFile(string Path, string Format, Dictionary<string, Tensor> Tensors, string? Wrapper, IReadOnlyList<string> Skipped) : IDisposable
{
    public void Dispose()
    {
        foreach (var tensor in Tensors.Values) tensor.Dispose();
    }
}

/// <summary>How a state_dict's names met a model's.</summary>
/// <param name="Matched">Model name → the file's tensor for it (owned by the <see cref="StateDictFile"/>).</param>
/// <param name="Renamed">File name → model name, for the names whose prefix was stripped.</param>
/// <param name="Unmatched">The file's names that are no name of the model (a task head, an EMA copy).</param>
/// <param name="Missing">The model's names the file lacks.</param>
/// <param name="ShapeMismatches">"name: [..] in the file, [..] in the model", one per tensor whose shape differs.</param>
public sealed record StateDictMatch(IReadOnlyDictionary<string, Tensor> Matched, IReadOnlyDictionary<string, string> Renamed,
    IReadOnlyList<string> Unmatched, IReadOnlyList<string> Missing, IReadOnlyList<string> ShapeMismatches);

/// <summary>
/// Reads a PyTorch state_dict (torch.save's zip or legacy format, or safetensors) and maps its names onto a model's:
/// the wrappers training code adds are stripped (DataParallel's <c>module.</c>, a LightningModule's <c>model.</c>,
/// torch.compile's <c>_orig_mod.</c>, Lightning's <c>{"state_dict": …}</c> checkpoint).
/// </summary>
public static class StateDictImport
{
    /// <summary>Prefixes stripped, repeatedly, from a name the model does not have.</summary>
    public static IReadOnlyList<string> Prefixes { get; } = ["module.", "model.", "_orig_mod."];

    /// <summary>Keys of a checkpoint dict that hold the weights, tried in this order (Lightning first).</summary>
    public static IReadOnlyList<string> Wrappers { get; } = ["state_dict", "model_state_dict", "model", "module", "net"];

    /// <summary>Reads the file; <c>.safetensors</c> by its header, anything else as a torch.save file.</summary>
    public static StateDictFile Read(string path)
    {
        if (IsSafetensors(path)) return new StateDictFile(path, "safetensors", Safetensors.Load(path), null, []);
        using var file = TorchFile.Open(path);
        if (file.Root is not PickleDict root)
            throw new InvalidDataException($"{path}: holds a {PickleReader.TypeName(file.Root)}, not a state_dict (a dict of names to tensors)");
        string? wrapper = Wrappers.FirstOrDefault(key => root.TryGetValue(key, out var inner) && inner is PickleDict d && HasTensor(d,
            new(ReferenceEqualityComparer.Instance)));
        var dict = wrapper != null ? (PickleDict)root[wrapper]! : root;
        var refs = new List<(string Name, TorchTensorRef Tensor)>();
        var skipped = new List<string>();
        Flatten(dict, "", refs, skipped, new(ReferenceEqualityComparer.Instance), path);
        if (refs.Count == 0) throw new InvalidDataException($"{path}: holds no tensors (its keys: {string.Join(", ", root.Keys.Take(10))})");
        var tensors = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var (name, reference) in refs)
                if (!tensors.TryAdd(name, file.GetTensor(reference)))
                    throw new InvalidDataException($"{path}: the name '{name}' appears twice");
        }
        catch
        {
            foreach (var tensor in tensors.Values) tensor.Dispose();
            throw;
        }
        return new StateDictFile(path, $"torch.save ({file.Format})", tensors, wrapper, skipped);
    }

    /// <summary>Matches the file's names to <paramref name="expected"/> (the model's names and shapes).</summary>
    public static StateDictMatch Match(IReadOnlyDictionary<string, Tensor> source, IReadOnlyDictionary<string, long[]> expected)
    {
        var matched = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        var from = new Dictionary<string, string>(StringComparer.Ordinal);
        var renamed = new Dictionary<string, string>(StringComparer.Ordinal);
        var unmatched = new List<string>();
        var mismatches = new List<string>();
        foreach (var (name, tensor) in source)
        {
            string target = name;
            while (!expected.ContainsKey(target) && Prefixes.FirstOrDefault(p => target.StartsWith(p, StringComparison.Ordinal)) is { } prefix)
                target = target[prefix.Length..];
            if (!expected.TryGetValue(target, out var shape))
            {
                unmatched.Add(name);
                continue;
            }
            if (from.TryGetValue(target, out var other))
                throw new InvalidDataException($"both '{other}' and '{name}' map onto the model's '{target}'");
            from[target] = name;
            if (target != name) renamed[name] = target;
            if (!tensor.shape.SequenceEqual(shape))
                mismatches.Add($"{name}: {ShapeText(tensor.shape)} in the file, {ShapeText(shape)} in the model");
            else
                matched[target] = tensor;
        }
        var missing = expected.Keys.Where(k => !from.ContainsKey(k)).ToList();
        return new StateDictMatch(matched, renamed, unmatched, missing, mismatches);
    }

    public static string ShapeText(long[] shape) => $"[{string.Join(", ", shape)}]";

    static bool IsSafetensors(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        using var stream = File.OpenRead(path);
        return LooksLikeSafetensors(stream);
    }

    /// <summary>
    /// safetensors: a u64 little-endian header length that fits the file, then a JSON object. Judged by that length,
    /// not by the first byte: a valid header of 128 + 256k bytes starts with 0x80, as a pickle does. A zip ("PK…")
    /// or a pickle read as a length is far longer than the file. The stream is left at its start.
    /// </summary>
    public static bool LooksLikeSafetensors(Stream stream)
    {
        Span<byte> head = stackalloc byte[9];
        long start = stream.Position;
        int read = stream.ReadAtLeast(head, 9, throwOnEndOfStream: false);
        stream.Position = start;
        if (read < 9 || head[8] != (byte)'{') return false;
        ulong length = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(head);
        return length >= 2 && length <= (ulong)Math.Max(stream.Length - start - 8, 0);
    }

    const int MaxDepth = 64;

    static bool HasTensor(PickleDict dict, HashSet<object> seen, int depth = 0) =>
        depth < MaxDepth && seen.Add(dict) && dict.Values.Any(v => v is TorchTensorRef || (v is PickleDict d && HasTensor(d, seen, depth + 1)));

    // Nested dicts (a state_dict of sub-dicts) become dotted names, as PyTorch's own names are. A dict met twice
    // (a cycle, or one shared) is refused: names would repeat, or never end.
    static void Flatten(PickleDict dict, string prefix, List<(string, TorchTensorRef)> refs, List<string> skipped, HashSet<object> seen, string path)
    {
        if (prefix.Count(c => c == '.') > MaxDepth) throw new InvalidDataException($"{path}: dicts nested deeper than {MaxDepth}");
        if (!seen.Add(dict))
            throw new InvalidDataException($"{path}: the dict at '{prefix.TrimEnd('.')}' appears twice in the state_dict (a cycle or a shared dict)");
        foreach (var (key, value) in dict)
        {
            string name = prefix + (key is string s ? s : key.ToString());
            switch (value)
            {
                case TorchTensorRef tensor: refs.Add((name, tensor)); break;
                case PickleDict inner: Flatten(inner, name + ".", refs, skipped, seen, path); break;
                default: skipped.Add(name); break;
            }
        }
    }
}
