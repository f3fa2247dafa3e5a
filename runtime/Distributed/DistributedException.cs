namespace Medformer.Runtime.Distributed;

/// <summary>
/// A data-parallel job failed: a collective broke or timed out, or rendezvous did not complete. The message names
/// the rank that died when the store knows it (<see cref="DeadRanks"/>).
/// </summary>
public sealed class DistributedException(string message, Exception? inner = null, IReadOnlyList<int>? deadRanks = null) : Exception(message, inner)
{
    public IReadOnlyList<int> DeadRanks { get; } = deadRanks ?? [];
}
