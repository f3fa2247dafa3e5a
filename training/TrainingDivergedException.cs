namespace Medformer.Training;

/// <summary>A run stopped because its loss or gradients stayed non-finite.</summary>
public sealed class TrainingDivergedException(string message) : Exception(message);
