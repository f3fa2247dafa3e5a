namespace Medformer.Datasets.Transforms;

/// <summary>The draws transforms need, all from the caller's <see cref="Random"/> (never a global generator).</summary>
internal static class Rng
{
    public static double Uniform(this Random rng, double low, double high) => low + (high - low) * rng.NextDouble();

    /// <summary>True with probability <paramref name="probability"/> (one draw, always taken).</summary>
    public static bool Chance(this Random rng, double probability) => rng.NextDouble() < probability;

    /// <summary>Standard normal (Box–Muller).</summary>
    public static double Normal(this Random rng)
    {
        double u = 1.0 - rng.NextDouble();
        double v = rng.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u)) * Math.Cos(2.0 * Math.PI * v);
    }

    /// <summary>Gamma(shape, 1), Marsaglia and Tsang; shapes below 1 boosted by U^(1/shape).</summary>
    public static double Gamma(this Random rng, double shape)
    {
        if (shape < 1)
            return rng.Gamma(shape + 1) * Math.Pow(1.0 - rng.NextDouble(), 1.0 / shape);
        double d = shape - 1.0 / 3.0, c = 1.0 / Math.Sqrt(9.0 * d);
        while (true)
        {
            double x = rng.Normal(), v = 1 + c * x;
            if (v <= 0) continue;
            v = v * v * v;
            double u = 1.0 - rng.NextDouble();
            if (Math.Log(u) < 0.5 * x * x + d - d * v + d * Math.Log(v)) return d * v;
        }
    }

    /// <summary>A point of the simplex drawn from the symmetric Dirichlet(<paramref name="alpha"/>) over <paramref name="count"/> parts.</summary>
    public static double[] Dirichlet(this Random rng, double alpha, int count)
    {
        var weights = new double[count];
        double sum = 0;
        for (int i = 0; i < count; i++) sum += weights[i] = rng.Gamma(alpha);
        if (sum <= 0) return Enumerable.Repeat(1.0 / count, count).ToArray();  // every draw underflowed (tiny alpha)
        for (int i = 0; i < count; i++) weights[i] /= sum;
        return weights;
    }

    [ThreadStatic] static TorchSharp.torch.Generator? generator;

    /// <summary>
    /// This thread's libtorch generator, reseeded from <paramref name="rng"/>, for tensor-sized draws (noise). Shared:
    /// use it at once and do not dispose it (one generator per thread instead of one per draw).
    /// </summary>
    public static TorchSharp.torch.Generator Generator(this Random rng)
    {
        generator ??= new TorchSharp.torch.Generator(0);
        generator.manual_seed(rng.NextInt64());
        return generator;
    }
}
