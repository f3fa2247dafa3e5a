using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// <see cref="BrainFuse"/> applied to a batch, as training uses it: <see cref="Draw"/> picks which rows become mixes
/// (the first round(share·B), at least one; the loader's order is already shuffled) and, for each, K distinct parts
/// among the batch's original rows and their weights (through <see cref="BrainFuse.Mix"/>). Every draw comes from
/// one <see cref="Generator"/> (the trainer's per-step generator), so a resumed run mixes the same.
/// <see cref="MixImages"/> then gives the batch with those rows replaced by their mixes, and <see cref="Combine"/>
/// mixes anything given per row ([B,…]: targets, stop-gradient predictions) by the same weights, one result per mix.
/// </summary>
public sealed class BrainFuseBatch : IDisposable
{
    BrainFuseBatch(long[] rows, long[][] parts, Tensor weights)
    {
        Rows = rows;
        Parts = parts;
        Weights = weights;
    }

    /// <summary>The batch rows replaced by mixes, [M].</summary>
    public long[] Rows { get; }

    /// <summary>The parts of each mix, [M][K]: rows of the original batch.</summary>
    public long[][] Parts { get; }

    /// <summary>Weights per mix: [M,K] (Dirichlet) or [M,K,…spatial] (smooth maps), fp32 on the CPU.</summary>
    public Tensor Weights { get; }

    /// <summary>The distinct rows some mix reads, ascending.</summary>
    public long[] PartRows => [.. Parts.SelectMany(p => p).Distinct().Order()];

    /// <summary>
    /// Draws the mixes of a batch of <paramref name="images"/> [B,C,…] (CPU) and <paramref name="metas"/>: round(share·B)
    /// mixes (at least one, at most B) of <paramref name="parts"/> distinct rows each. <paramref name="what"/> names the
    /// setting in errors (e.g. "--brainfuse").
    /// </summary>
    public static BrainFuseBatch Draw(BrainFuse mixer, Tensor images, IReadOnlyList<SampleMeta> metas, int parts, double share, Generator generator,
        string what)
    {
        int b = metas.Count;
        if (images.shape[0] != b) throw new ArgumentException($"{what}: {metas.Count} metas for {images.shape[0]} images");
        if (parts < 2) throw new ArgumentException($"{what}: parts={parts}: a mix needs at least 2 parts");
        if (b < parts) throw new ArgumentException($"{what}: parts={parts} needs batches of at least {parts} samples, this one has {b}");
        if (!(share > 0 && share <= 1)) throw new ArgumentException($"{what}: share={share} must be in (0, 1]");
        int count = Math.Clamp((int)Math.Round(share * b, MidpointRounding.AwayFromZero), 1, b);
        // One seed for the mixer's System.Random (its weights), drawn from the step's generator, then the parts.
        using var seedDraw = randint(0, int.MaxValue, [1], dtype: ScalarType.Int64, generator: generator);
        var rng = new Random((int)seedDraw.item<long>());
        var chosen = new long[count][];
        for (int m = 0; m < count; m++)
        {
            using var order = randperm(b, generator: generator);
            chosen[m] = order.narrow(0, 0, parts).data<long>().ToArray();
        }
        var plain = mixer with { ClassCount = 0 };   // targets are mixed by Combine, as each user reads them
        var weights = new Tensor[count];
        try
        {
            for (int m = 0; m < count; m++)
            {
                // The mixer checks the parts (one grid, one channel count) and draws their weights; its image is not kept.
                var samples = chosen[m].Select(i => new Sample(images[i], metas[(int)i])).ToArray();
                try
                {
                    using var mixed = plain.Mix(samples, rng);
                    weights[m] = mixed.Weights.to(ScalarType.Float32).cpu().clone();
                }
                finally
                {
                    foreach (var sample in samples) sample.Image.Dispose();
                }
            }
            return new BrainFuseBatch([.. Enumerable.Range(0, count).Select(i => (long)i)], chosen, stack(weights));
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{what}: {e.Message}", e);
        }
        finally
        {
            foreach (var w in weights) w?.Dispose();
        }
    }

    /// <summary>
    /// <paramref name="perRow"/> [B,…] with each mix's row replaced by Σ_k w_k · perRow[part_k] (images of any view;
    /// same dtype and device as the input).
    /// </summary>
    public Tensor MixImages(Tensor perRow)
    {
        using var scope = NewDisposeScope();
        var mixes = Combine(perRow);
        return scope.MoveToOuter(perRow.index_copy(0, tensor(Rows, device: perRow.device), mixes.to(perRow.dtype)));
    }

    /// <summary>
    /// Each mix's combination of <paramref name="perRow"/> [B,…] (targets, predictions): [M,…]. Per-row tensors on the
    /// images' grid ([B,C,…spatial]) take the weight maps as they are; others (class distributions [B,K]) take each
    /// part's mean weight, as <see cref="BrainFuse.Mix"/> mixes labels.
    /// </summary>
    public Tensor Combine(Tensor perRow)
    {
        using var scope = NewDisposeScope();
        var results = new Tensor[Parts.Length];
        for (int m = 0; m < Parts.Length; m++)
        {
            var perPart = perRow.index_select(0, tensor(Parts[m], device: perRow.device));
            results[m] = BrainFuse.Combine(perPart, WeightsFor(m, perPart).to(perRow.device));
        }
        return scope.MoveToOuter(stack(results));
    }

    /// <summary>Mix <paramref name="m"/>'s weights for per-part tensors [K,…]: the maps where they fit the tensor's grid, else their means [K].</summary>
    Tensor WeightsFor(int m, Tensor perPart)
    {
        var w = Weights[m];
        if (w.dim() == 1) return w;
        var spatial = w.shape[1..];
        return perPart.dim() == w.dim() + 1 && perPart.shape[2..].SequenceEqual(spatial) ? w : w.flatten(1).mean([1]);
    }

    public void Dispose() => Weights.Dispose();
}
