namespace Medformer.Runtime;

/// <summary>
/// A safetensors file is malformed, or cannot be read or written as asked. The message names the file and the fault,
/// e.g. "/data/model.safetensors: tensors 'a' and 'b' overlap (data_offsets [0, 12] and [8, 20])".
/// </summary>
public sealed class SafetensorsException(string path, string fault, Exception? inner = null)
    : Exception($"{path}: {fault}", inner)
{
    public string Path { get; } = path;

    /// <summary>The fault alone, without the path.</summary>
    public string Fault { get; } = fault;
}
