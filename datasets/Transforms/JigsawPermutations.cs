using System.Collections.Concurrent;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// A fixed set of tile permutations far apart in Hamming distance (Noroozi and Favaro, 2016), the classes of the
/// jigsaw pretext task. Built greedily: the identity first, then each time the candidate whose smallest distance to
/// the permutations already chosen is largest (ties: the larger summed distance, which is Noroozi and Favaro's
/// criterion, then the first). Candidates are all n! permutations for n ≤ 9 tiles, else 20·count (at least 10,000)
/// random ones from <c>seed</c>. The set depends only on (tiles, count, seed): it defines the labels.
/// </summary>
public sealed class JigsawPermutations
{
    static readonly ConcurrentDictionary<(int, int, int), JigsawPermutations> Cache = new();

    /// <summary>Permutations[label][i] = the original tile shown at tile position i (row-major over the tile grid).</summary>
    public IReadOnlyList<int[]> Permutations { get; }

    /// <summary>The smallest Hamming distance between two permutations of the set.</summary>
    public int MinimumHammingDistance { get; }

    public int Tiles { get; }

    JigsawPermutations(int tiles, int[][] permutations)
    {
        Tiles = tiles;
        Permutations = permutations;
        int minimum = tiles;
        for (int i = 0; i < permutations.Length; i++)
            for (int j = i + 1; j < permutations.Length; j++)
                minimum = Math.Min(minimum, Hamming(permutations[i], permutations[j]));
        MinimumHammingDistance = permutations.Length > 1 ? minimum : 0;
    }

    /// <summary>The set for <paramref name="tiles"/> tiles and <paramref name="count"/> classes, built once per process.</summary>
    public static JigsawPermutations Get(int tiles, int count, int seed = 0)
    {
        if (tiles < 2 || tiles > 1000) throw new ArgumentException($"JigsawPermutations: needs 2 to 1000 tiles, got {tiles}");
        double available = Factorial(tiles);
        if (count < 1 || count > available)
            throw new ArgumentException($"JigsawPermutations: {tiles} tiles have {available} permutations; asked for {count}");
        if (tiles > 9 && count > 100_000)
            throw new ArgumentException($"JigsawPermutations: at most 100,000 permutations of more than 9 tiles, asked for {count}");
        return Cache.GetOrAdd((tiles, count, seed), key => new JigsawPermutations(key.Item1, Build(key.Item1, key.Item2, key.Item3)));
    }

    static double Factorial(int n) => Enumerable.Range(1, n).Aggregate(1.0, (f, i) => f * i);

    public static int Hamming(int[] x, int[] y)
    {
        int d = 0;
        for (int i = 0; i < x.Length; i++) d += x[i] != y[i] ? 1 : 0;
        return d;
    }

    static int[][] Build(int tiles, int count, int seed)
    {
        var candidates = tiles <= 9 ? AllPermutations(tiles) : RandomPermutations(tiles, Math.Max(20 * count, 10_000), seed);
        int n = candidates.Length / tiles;
        var nearest = new int[n];                          // smallest distance to the chosen set; -1 once chosen
        var total = new long[n];                           // summed distance to the chosen set
        Array.Fill(nearest, int.MaxValue);
        var chosen = new List<int[]>(count);
        int pick = IndexOfIdentity(candidates, tiles);
        while (true)
        {
            var permutation = Array.ConvertAll(candidates.AsSpan(pick * tiles, tiles).ToArray(), b => (int)b);
            chosen.Add(permutation);
            nearest[pick] = -1;
            if (chosen.Count == count) break;
            int best = -1;
            for (int c = 0; c < n; c++)
            {
                if (nearest[c] < 0) continue;
                int d = 0;
                var candidate = candidates.AsSpan(c * tiles, tiles);
                for (int i = 0; i < tiles; i++) d += candidate[i] != permutation[i] ? 1 : 0;
                if (d < nearest[c]) nearest[c] = d;
                total[c] += d;
                if (best < 0 || nearest[c] > nearest[best] || (nearest[c] == nearest[best] && total[c] > total[best])) best = c;
            }
            pick = best;
        }
        return chosen.ToArray();
    }

    static int IndexOfIdentity(byte[] candidates, int tiles)
    {
        for (int c = 0; c < candidates.Length / tiles; c++)
        {
            bool identity = true;
            for (int i = 0; i < tiles && identity; i++) identity = candidates[c * tiles + i] == i;
            if (identity) return c;
        }
        throw new InvalidOperationException("the candidate permutations lack the identity");
    }

    // Heap's algorithm, into one flat array (9! × 9 bytes = 3.3 MB at most).
    static byte[] AllPermutations(int tiles)
    {
        int count = (int)Factorial(tiles);
        var result = new byte[count * tiles];
        var current = Enumerable.Range(0, tiles).Select(i => (byte)i).ToArray();
        var c = new int[tiles];
        int written = 0;
        current.CopyTo(result, written++ * tiles);
        int k = 0;
        while (k < tiles)
        {
            if (c[k] < k)
            {
                int swap = k % 2 == 0 ? 0 : c[k];
                (current[swap], current[k]) = (current[k], current[swap]);
                current.CopyTo(result, written++ * tiles);
                c[k]++;
                k = 0;
            }
            else c[k++] = 0;
        }
        return result;
    }

    static byte[] RandomPermutations(int tiles, int count, int seed)
    {
        if (tiles > 255) throw new ArgumentException($"JigsawPermutations: at most 255 tiles, got {tiles}");
        var rng = new Random(seed);
        var result = new byte[count * tiles];
        var seen = new HashSet<string>();
        var current = new byte[tiles];
        for (int i = 0; i < tiles; i++) result[i] = (byte)i;   // the identity, which the set starts from
        seen.Add(Convert.ToHexString(result, 0, tiles));
        int written = 1;
        while (written < count)
        {
            for (int i = 0; i < tiles; i++) current[i] = (byte)i;
            for (int i = tiles - 1; i > 0; i--)
            {
                int j = rng.Next(i + 1);
                (current[i], current[j]) = (current[j], current[i]);
            }
            if (seen.Add(Convert.ToHexString(current))) current.CopyTo(result, written++ * tiles);
        }
        return result;
    }
}
