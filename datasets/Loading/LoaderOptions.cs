namespace Medformer.Datasets.Loading;

/// <summary>
/// How a <see cref="DataLoader"/> batches, orders and prefetches (PyTorch's DataLoader and DistributedSampler
/// arguments). <paramref name="Workers"/> background threads prepare batches; 0 prepares them on the caller's
/// thread. Each rank of <paramref name="WorldSize"/> sees a disjoint shard of every corpus. A sample whose file is
/// bad is skipped and replaced (and counted) unless <paramref name="Strict"/>; more than
/// <paramref name="MaxBadInARow"/> bad samples in a row stop the run.
/// </summary>
public sealed record LoaderOptions(
    int BatchSize,
    long Seed = 0,
    int Workers = 2,
    int Prefetch = 2,
    int Rank = 0,
    int WorldSize = 1,
    bool Strict = false,
    int MaxBadInARow = 64)
{
    internal void Validate()
    {
        if (BatchSize < 1) throw new ArgumentException($"batch size {BatchSize} must be at least 1");
        if (Workers < 0) throw new ArgumentException($"workers {Workers} must be 0 or more");
        if (Prefetch < 1) throw new ArgumentException($"prefetch {Prefetch} must be at least 1");
        if (WorldSize < 1 || Rank < 0 || Rank >= WorldSize)
            throw new ArgumentException($"rank {Rank} of world size {WorldSize}: need 0 ≤ rank < world size");
        if (MaxBadInARow < 1) throw new ArgumentException($"max bad in a row {MaxBadInARow} must be at least 1");
    }
}
