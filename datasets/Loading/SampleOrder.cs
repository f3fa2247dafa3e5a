namespace Medformer.Datasets.Loading;

/// <summary>
/// The order in which one rank draws a corpus's samples, pass after pass (PyTorch's DistributedSampler, endless):
/// each pass shuffles all <c>count</c> indices with a seed shared by every rank, pads the pass by wrapping to a
/// multiple of the world size, and gives rank r the positions r, r+W, r+2W, … So ranks see disjoint shards of a
/// pass, every rank draws the same number per pass, and draw j is a pure function of (seed, corpus, rank, j).
/// </summary>
public sealed class SampleOrder(long count, long seed, int rank = 0, int worldSize = 1)
{
    long[]? permutation;
    long permutationPass = -1;

    /// <summary>Draws per pass for this rank: ⌈count / worldSize⌉.</summary>
    public long PerPass { get; } = (count + worldSize - 1) / worldSize;

    /// <summary>The corpus index of this rank's draw number <paramref name="draw"/>.</summary>
    public long At(long draw)
    {
        long pass = draw / PerPass, k = draw % PerPass;
        return Pass(pass)[(rank + k * worldSize) % count];
    }

    /// <summary>A uniformly random index from the same rank shard and pass as <paramref name="draw"/> (a stand-in for a bad sample).</summary>
    public long Replacement(long draw, Random rng) => At(draw / PerPass * PerPass + rng.NextInt64(PerPass));

    long[] Pass(long pass)
    {
        if (pass == permutationPass) return permutation!;
        var order = new long[count];
        for (long i = 0; i < count; i++) order[i] = i;
        var rng = new Random((int)(Mix.Hash(seed, pass) & int.MaxValue));
        for (long i = count - 1; i > 0; i--)
        {
            long j = rng.NextInt64(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        permutation = order;
        permutationPass = pass;
        return order;
    }
}
