namespace Medformer.Runtime;

/// <summary>TorchSharp's native backend could not be loaded; the message says which library and why.</summary>
public sealed class TorchLoadException(string message) : Exception(message);
