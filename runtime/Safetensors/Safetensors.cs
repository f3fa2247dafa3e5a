using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Runtime;

/// <summary>
/// Saving and loading safetensors files, as <c>safetensors.torch.save_file</c> / <c>load_file</c> do. For one
/// tensor at a time, or the types TorchSharp lacks, open the file with <see cref="SafetensorsFile.Open"/>.
/// </summary>
/// <remarks>
/// Files are written as the reference implementation writes them: tensors laid out by dtype, widest alignment first
/// (its Dtype order: U64, I64, F64, C64, F32, U32, I32, BF16, F16, U16, I16, the 8-bit types, the sub-byte floats,
/// BOOL), then by name (ordinal, on UTF-8 bytes); a compact JSON header with <c>__metadata__</c> first, padded with
/// spaces to a multiple of 8 bytes, so every tensor's data starts aligned for its type. The file is written to a
/// temporary sibling, flushed to disk and renamed over <c>path</c>, so a reader never sees it half written.
/// </remarks>
public static class Safetensors
{
    static readonly IReadOnlyDictionary<string, Tensor> NoTensors = new Dictionary<string, Tensor>();
    static readonly IReadOnlyDictionary<string, SafetensorsRawTensor> NoRaw = new Dictionary<string, SafetensorsRawTensor>();

    /// <summary>Writes torch tensors (any device, any layout in memory; copied to a contiguous CPU buffer as needed).</summary>
    public static void Save(IReadOnlyDictionary<string, Tensor> tensors, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(tensors, NoRaw, path, metadata);

    /// <summary>Writes tensors given as raw bytes, for the types TorchSharp has none for (F8_E4M3, U16, F4, ...).</summary>
    public static void Save(IReadOnlyDictionary<string, SafetensorsRawTensor> raw, string path, IReadOnlyDictionary<string, string>? metadata = null) =>
        Save(NoTensors, raw, path, metadata);

    /// <summary>Writes torch tensors and raw ones into one file; a name may appear in only one of the two.</summary>
    public static void Save(IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, SafetensorsRawTensor> raw, string path,
        IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(tensors);
        ArgumentNullException.ThrowIfNull(raw);
        ArgumentNullException.ThrowIfNull(path);
        SafetensorsWriter.Write(tensors, raw, path, metadata);
    }

    /// <summary>
    /// Reads every tensor of the file; the caller owns (disposes) them. On the CPU they are views of the file's
    /// mapping where aligned (see <see cref="SafetensorsFile"/>); on another device, copies there.
    /// </summary>
    public static Dictionary<string, Tensor> Load(string path, Device? device = null)
    {
        using var file = SafetensorsFile.Open(path);
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (string name in file.Names)
            {
                Tensor tensor = file.GetTensor(name);
                if (device != null && device.type != DeviceType.CPU)
                {
                    using var cpu = tensor;
                    tensor = cpu.to(device);
                }
                result.Add(name, tensor);
            }
        }
        catch
        {
            foreach (var tensor in result.Values) tensor.Dispose();
            throw;
        }
        return result;
    }
}
