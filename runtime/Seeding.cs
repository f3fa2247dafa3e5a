using System.Security.Cryptography;
using System.Text;
using TorchSharp;

namespace Medformer.Runtime;

/// <summary>
/// One seed for every random source we use. libtorch's global generators (CPU and CUDA) are seeded directly;
/// everything else (data order, augmentation, masking, per-worker streams) takes its own generator derived from
/// the seed and a purpose name, so adding a new random consumer never shifts the streams of the others.
/// </summary>
public static class Seeding
{
    static long baseSeed;

    public static long Seed => baseSeed;

    public static void SeedEverything(long seed)
    {
        TorchRuntime.EnsureLoaded();
        baseSeed = seed;
        torch.manual_seed(seed);
        if (torch.cuda.is_available()) torch.cuda.manual_seed_all(seed);
    }

    /// <summary>A stable 63-bit seed for <paramref name="purpose"/> (and e.g. a rank or worker index).</summary>
    public static long Derive(string purpose, long index = 0) => Derive(baseSeed, purpose, index);

    public static long Derive(long seed, string purpose, long index)
    {
        Span<byte> input = stackalloc byte[16 + Encoding.UTF8.GetMaxByteCount(purpose.Length)];
        BitConverter.TryWriteBytes(input, seed);
        BitConverter.TryWriteBytes(input[8..], index);
        int n = Encoding.UTF8.GetBytes(purpose, input[16..]);
        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input[..(16 + n)], hash);
        return BitConverter.ToInt64(hash) & long.MaxValue;
    }

    /// <summary>A .NET random stream for a purpose (shuffles, augmentation parameters).</summary>
    public static Random Random(string purpose, long index = 0) => new((int)(Derive(purpose, index) & int.MaxValue));

    /// <summary>A libtorch generator for a purpose (random tensors outside the global stream).</summary>
    public static torch.Generator Generator(string purpose, long index = 0, torch.Device? device = null)
    {
        TorchRuntime.EnsureLoaded();
        var generator = new torch.Generator((ulong)Derive(purpose, index), device ?? torch.CPU);
        return generator;
    }
}
