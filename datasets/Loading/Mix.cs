namespace Medformer.Datasets.Loading;

/// <summary>SplitMix64 over a few integers: the seed of a sample's augmentation or a batch's plan, from its coordinates alone.</summary>
static class Mix
{
    public static long Hash(long a, long b = 0, long c = 0, long d = 0, long e = 0)
    {
        ulong h = 0x9E3779B97F4A7C15UL;
        foreach (long v in (ReadOnlySpan<long>)[a, b, c, d, e])
        {
            h ^= (ulong)v;
            h += 0x9E3779B97F4A7C15UL;
            h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9UL;
            h = (h ^ (h >> 27)) * 0x94D049BB133111EBUL;
            h ^= h >> 31;
        }
        return (long)(h & long.MaxValue);
    }

    public static Random Random(long a, long b = 0, long c = 0, long d = 0, long e = 0) => new((int)(Hash(a, b, c, d, e) & int.MaxValue));
}
