using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Pretrain.Objectives;

/// <summary>
/// Jigsaw puzzles (Noroozi and Favaro, 2016): the image is cut into a grid of tiles (2×2, or 2×2×2 for a volume),
/// the tiles are shuffled by one of a fixed set of permutations, and the model names the permutation. The set is
/// chosen greedily for the largest minimal Hamming distance between its members, as in the paper
/// (<see cref="JigsawPermutations"/>). The shuffle runs on the whole batch at once, not per sample in the loader.
/// </summary>
public sealed class Jigsaw : Objective
{
    private readonly PretextHead head;
    private readonly int grid;

    public Jigsaw(int dim, int grid = 2, int classes = 24) : base("jigsaw")
    {
        if (grid < 2) throw new ArgumentException($"jigsaw grid {grid} must be at least 2");
        if (classes < 2) throw new ArgumentException($"jigsaw permutations {classes} must be at least 2");
        this.grid = grid;
        Classes = classes;
        head = new PretextHead(dim, classes);
        RegisterComponents();
    }

    public int Classes { get; }

    public override double? ChanceLoss(Batch batch, PretrainStep step) => Math.Log(Classes);

    /// <summary>The permutation set for a number of tiles: Classes permutations, the identity first (shared with the jigsaw transform).</summary>
    public IReadOnlyList<int[]> Permutations(int tiles) => JigsawPermutations.Get(tiles, Classes).Permutations;

    public override bool PerSample => true;

    public override IReadOnlyList<Linear> LastLayers => [head.Output];

    public override Tensor Loss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, reduction: nn.Reduction.Mean);

    public override Tensor PerSampleLoss(MedformerModel model, Batch batch, PretrainStep step) => Loss(model, batch, step, reduction: nn.Reduction.None);

    Tensor Loss(MedformerModel model, Batch batch, PretrainStep step, nn.Reduction reduction)
    {
        using var scope = NewDisposeScope();
        var x = batch.Images;
        int axes = (int)x.dim() - 2;
        long b = x.shape[0], c = x.shape[1];
        long[] size = x.shape[2..];
        if (size.Any(n => n % grid != 0))
            throw new ArgumentException($"jigsaw: image [{string.Join(",", size)}] does not split into a {grid}-tile grid ({batch.Metas[0]})");
        int tiles = (int)Math.Pow(grid, axes);
        var set = Permutations(tiles);
        var label = randint(0, set.Count, [b], generator: step.Generator, device: x.device);                  // [B]
        var table = tensor(set.SelectMany(p => p.Select(i => (long)i)).ToArray(), device: x.device).view(set.Count, tiles); // [P,T]
        var order = table.index_select(0, label);                                                            // [B,T]
        var pieces = Tiles(x, axes);                                                                         // [B,T,C,…tile]
        var index = order.view([b, tiles, .. Enumerable.Repeat(1L, 1 + axes)]).expand(pieces.shape);
        var shuffled = Untile(pieces.gather(1, index), x.shape, axes);
        var logits = head.call(model, model.forward(step.Cast(shuffled), Keys(batch)));
        return scope.MoveToOuter(F.cross_entropy(logits.to(ScalarType.Float32), label, reduction: reduction));
    }

    // [B,C,g·t1,g·t2(,g·t3)] → [B,g^A,C,t1,t2(,t3)], tiles in row-major order over the grid.
    Tensor Tiles(Tensor x, int axes)
    {
        long b = x.shape[0], c = x.shape[1];
        var split = new List<long> { b, c };
        foreach (long n in x.shape[2..]) split.AddRange([grid, n / grid]);
        var gridAxes = Enumerable.Range(0, axes).Select(a => (long)(2 + 2 * a));
        var tileAxes = Enumerable.Range(0, axes).Select(a => (long)(3 + 2 * a));
        long[] order = [0, .. gridAxes, 1, .. tileAxes];
        return x.reshape([.. split]).permute(order).reshape([b, -1, c, .. x.shape[2..].Select(n => n / grid)]);
    }

    Tensor Untile(Tensor pieces, long[] shape, int axes)
    {
        long b = shape[0], c = shape[1];
        long[] tile = [.. shape[2..].Select(n => n / grid)];
        var grouped = pieces.reshape([b, .. Enumerable.Repeat((long)grid, axes), c, .. tile]);           // [B,g…,C,t…]
        var order = new List<long> { 0, axes + 1 };
        for (int a = 0; a < axes; a++) order.AddRange([1 + a, axes + 2 + a]);                            // B,C,g1,t1,g2,t2…
        return grouped.permute([.. order]).reshape(shape);
    }
}
