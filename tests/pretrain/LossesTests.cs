using Medformer.Datasets.Transforms;
using Medformer.Pretrain.Objectives;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Tests.Pretrain;

/// <summary>
/// <see cref="Losses"/> against PyTorch (<see cref="LossesParity"/>: outputs and input gradients, fp64 within 1e-5
/// and fp32 within 1e-4 relative), against cases worked by hand, and under a simulated two-rank data parallel run.
/// </summary>
public sealed class LossesTests(LossesParity parity, ITestOutputHelper output) : IClassFixture<LossesParity>
{
    [Theory]
    [InlineData("NtXent", 2)]
    [InlineData("NtXentGathered", 2)]
    [InlineData("Byol", 1)]
    [InlineData("BarlowTwins", 2)]
    [InlineData("PixelPropagation", 2)]
    [InlineData("PixelContrast", 2)]
    [InlineData("PositivePairs", 2)]
    [InlineData("Patchify", 2)]
    [InlineData("Unpatchify", 2)]
    [InlineData("MaskedReconstruction", 3)]
    [InlineData("KeepVisible", 1)]
    public void MatchesPyTorch(string function, int cases)
    {
        var mine = parity.Cases.Where(c => c.Function == function).ToList();
        Assert.Equal(2 * cases, mine.Count);
        foreach (var c in mine)
        {
            double tolerance = c.Type == ScalarType.Float64 ? 1e-5 : 1e-4;
            Assert.True(parity.Report.TryGetProperty(c.Name, out var entry), $"{c.Name} missing from the reference's report: {parity.Log}");
            var outputs = entry.GetProperty("out");
            var grads = entry.GetProperty("grad");
            foreach (string y in c.Outputs)
            {
                double error = outputs.GetProperty(y).GetDouble();
                output.WriteLine($"{c.Name} {y}: {error:G3}");
                Assert.True(error < tolerance, $"{c.Name}: output {y} is off by {error:G3} relative to PyTorch");
            }
            Assert.Equal(c.Grads.Length, grads.EnumerateObject().Count());
            foreach (string x in c.Grads)
            {
                double error = grads.GetProperty(x).GetDouble();
                output.WriteLine($"{c.Name} d/d{x}: {error:G3}");
                Assert.True(error < tolerance, $"{c.Name}: the gradient for {x} is off by {error:G3} relative to PyTorch");
            }
        }
    }

    [Fact]
    public void NtXentOfTwoIdenticalViewsOfOrthogonalVectorsHasTheClosedForm()
    {
        using var scope = NewDisposeScope();
        // Rows scaled differently: the loss sees directions only.
        var z = eye(4, dtype: ScalarType.Float64) * tensor(new[] { 1.0, 3.0, 0.5, 7.0 }, dtype: ScalarType.Float64).unsqueeze(1);
        const double t = 0.5;
        // Each anchor: its positive at cos 1, 2N-2 = 6 negatives at cos 0.
        double expected = Math.Log(1 + 6 * Math.Exp(-1 / t));
        Assert.Equal(expected, Losses.NtXent(z, z.clone(), t).item<double>(), 12);
        // One pair: the positive is the only candidate.
        Assert.Equal(0, Losses.NtXent(z[..1], z[1..2], t).item<double>(), 12);
    }

    [Fact]
    public void ByolIsZeroForAlignedAndFourForOpposite()
    {
        using var scope = NewDisposeScope();
        var z = randn(5, 8, dtype: ScalarType.Float64);
        Assert.Equal(0, Losses.Byol(z * 3, z).item<double>(), 12);
        Assert.Equal(4, Losses.Byol(-z, z).item<double>(), 12);
    }

    [Fact]
    public void BarlowTwinsOfDecorrelatedStandardisedFeaturesIsZero()
    {
        using var scope = NewDisposeScope();
        // Columns of a 4×4 Hadamard matrix but the constant one: mean 0, biased variance 1, mutually orthogonal.
        var z = tensor(new double[,] { { 1, 1, 1 }, { -1, 1, -1 }, { 1, -1, -1 }, { -1, -1, 1 } });
        const double eps = Losses.BarlowTwinsEps;
        // c = I·2 / (sqrt(1 + eps)·sqrt(4 + eps)) for z against 2z + 5: 0 up to the eps, whatever λ.
        double diagonal = 2 / (Math.Sqrt(1 + eps) * Math.Sqrt(4 + eps));
        AssertClose(tensor(3 * Math.Pow(1 - diagonal, 2)), Losses.BarlowTwins(z, z * 2 + 5, 10), 1e-6);
        Assert.True(Losses.BarlowTwins(z, z * 2 + 5, 10).item<double>() < 1e-9);
        Assert.Equal(3 * Math.Pow(1 + 1 / (1 + eps), 2), Losses.BarlowTwins(z, -z, 10).item<double>(), 12);
        // Correlated columns, each perfectly correlated with its twin: the diagonal term alone (λ = 0) vanishes.
        var r = randn(16, 6, dtype: ScalarType.Float64);
        Assert.True(Losses.BarlowTwins(r, r * 5 - 2, 0).item<double>() < 1e-8);
        Assert.True(Losses.BarlowTwins(r, r * 5 - 2, 1).item<double>() > 1e-3);
    }

    [Fact]
    public void PixelPropagationAveragesOverSimilarCellsOnly()
    {
        using var scope = NewDisposeScope();
        // Cells 0 and 2 point the same way, cell 1 is orthogonal to both, cell 3 opposite to 0 and 2.
        var x = tensor(new double[,] { { 1, 0 }, { 0, 1 }, { 2, 0 }, { -1, 0 } }).unsqueeze(0);
        var g = tensor(new double[,] { { 1, 10 }, { 100, 1000 }, { 3, 30 }, { 7, 70 } }).unsqueeze(0);
        var y = Losses.PixelPropagation(x, g, 2);
        var expected = tensor(new double[,] { { 4, 40 }, { 100, 1000 }, { 4, 40 }, { 7, 70 } }).unsqueeze(0);
        Assert.True(y.allclose(expected), y.ToString(TorchSharp.TensorStringStyle.Julia));
    }

    [Fact]
    public void PixelContrastOfIdenticalFeaturesIsMinusOneAndZeroWithoutPositives()
    {
        using var scope = NewDisposeScope();
        var y = randn(2, 3, 4, dtype: ScalarType.Float64).requires_grad_();
        var diagonal = eye(3, dtype: ScalarType.Bool).unsqueeze(0).expand(2, 3, 3);
        Assert.Equal(-1, Losses.PixelContrast(y, y.detach() * 2, diagonal).item<double>(), 12);
        var none = Losses.PixelContrast(y, y.detach(), zeros(2, 3, 3, dtype: ScalarType.Bool));
        Assert.Equal(0, none.item<double>());
        none.backward();
        Assert.True(y.grad is { } grad && grad.eq(0).all().item<bool>());
    }

    [Fact]
    public void PositivePairsOnATwoByTwoGrid()
    {
        using var scope = NewDisposeScope();
        // View 1's cells at (row, column) centres (0.5, 0.5), (0.5, 1.5), (1.5, 0.5), (1.5, 1.5); view 2's the same
        // grid moved 0.6 pixels along the columns. Pairs closer than 0.7 pixels: distance 0.6 and 0.4.
        var grid1 = tensor(new double[,] { { 0.5, 0.5, 1.5, 1.5 }, { 0.5, 1.5, 0.5, 1.5 } }).unsqueeze(0);
        var grid2 = grid1 + tensor(new[] { 0.0, 0.6 }).reshape(1, 2, 1);
        var expected = tensor(new bool[,] { { true, false, false, false }, { true, true, false, false }, { false, false, true, false }, { false, false, true,
            true } });
        var positives = PixelPairs.PositiveBatch(grid1, grid2, 0.7);
        Assert.Equal(new long[] { 1, 4, 4 }, positives.shape);
        Assert.True(Same(positives[0], expected), positives.ToString(TorchSharp.TensorStringStyle.Julia));
        // Strictly closer: a pair exactly at the threshold is not positive; in 3D too.
        var origin = zeros(1, 3, 1);
        var points = tensor(new float[,] { { 1, 0 }, { 0, 0 }, { 0, 0.5f } }).unsqueeze(0);
        Assert.True(Same(PixelPairs.PositiveBatch(origin, points, 1)[0, 0], tensor(new[] { false, true })));
    }

    [Fact]
    public void PatchifyAndUnpatchifyRoundTripIn2DAnd3D()
    {
        using var scope = NewDisposeScope();
        foreach (var (shape, patch) in new[] { (new long[] { 2, 3, 8, 12 }, 4), (new long[] { 2, 2, 6, 4, 8 }, 2), (new long[] { 1, 1, 5, 5 }, 5) })
        {
            var images = randn(shape);
            var patches = Losses.Patchify(images, patch);
            long tokens = shape[2..].Select(s => s / patch).Aggregate(1L, (a, b) => a * b);
            long values = shape[1] * (long)Math.Pow(patch, shape.Length - 2);
            Assert.Equal(new[] { shape[0], tokens, values }, patches.shape);
            Assert.True(Same(Losses.Unpatchify(patches, shape, patch), images));
        }
    }

    [Fact]
    public void PatchifyOrdersTokensAndPixelsAsTheTokenizerSeesThem()
    {
        using var scope = NewDisposeScope();
        foreach (var (shape, patch) in new[] { (new long[] { 2, 3, 8, 12 }, 4), (new long[] { 2, 2, 4, 6, 8 }, 2) })
        {
            // A stride-p convolution whose output channel o copies pixel (pd, ph, pw, c) with o = ((pd·p + ph)·p + pw)·C + c:
            // token t of its flatten(2).transpose(1, 2) must be Patchify's patch t.
            int axes = shape.Length - 2, channels = (int)shape[1];
            int pixels = (int)Math.Pow(patch, axes);
            var kernel = zeros([pixels * channels, channels, .. Enumerable.Repeat((long)patch, axes)], dtype: ScalarType.Float64);
            for (int pixel = 0; pixel < pixels; pixel++)
                for (int c = 0; c < channels; c++)
                {
                    var at = new List<TensorIndex> { TensorIndex.Single(pixel * channels + c), TensorIndex.Single(c) };
                    for (int axis = axes - 1, rest = pixel; axis >= 0; axis--, rest /= patch) at.Insert(2, TensorIndex.Single(rest % patch));
                    kernel[at.ToArray()] = tensor(1.0);
                }
            var images = randn(shape, dtype: ScalarType.Float64);
            var strides = Enumerable.Repeat((long)patch, axes).ToArray();
            var conv = axes == 2 ? F.conv2d(images, kernel, strides: strides) : F.conv3d(images, kernel, strides: strides);
            var tokens = conv.flatten(2).transpose(1, 2);
            Assert.True(Same(tokens, Losses.Patchify(images, patch)), $"patch order differs from the tokenizer's for {string.Join('x', shape)}");
        }
    }

    [Fact]
    public void PatchifyNamesTheShapeThatIsNotAMultiple()
    {
        using var scope = NewDisposeScope();
        var e = Assert.Throws<ArgumentException>(() => Losses.Patchify(zeros(1, 2, 8, 10), 4));
        Assert.Contains("[1, 2, 8, 10]", e.Message);
        Assert.Contains("patch size 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => Losses.Unpatchify(zeros(1, 6, 16), [1, 2, 8, 12], 4));
        Assert.Contains("[1, 6, 16]", e.Message);
        Assert.Throws<ArgumentException>(() => Losses.Patchify(zeros(2, 8, 8), 4));
    }

    [Theory]
    [InlineData(10, 0.3, 3)]
    [InlineData(14, 0.75, 10)]   // 10.5 rounds to even
    [InlineData(196, 0.75, 147)]
    [InlineData(7, 0.0, 0)]
    [InlineData(7, 1.0, 7)]
    public void RandomMaskMasksExactlyTheRoundedCountPerRow(long tokens, double ratio, long masked)
    {
        using var scope = NewDisposeScope();
        var mask = Losses.RandomMask(5, tokens, ratio);
        Assert.Equal(ScalarType.Bool, mask.dtype);
        Assert.Equal(new[] { 5L, tokens }, mask.shape);
        Assert.Equal(Enumerable.Repeat(masked, 5), mask.sum(1).data<long>().ToArray());
    }

    [Fact]
    public void RandomMaskIsUniformAndRepeatsUnderASeed()
    {
        using var scope = NewDisposeScope();
        using var g1 = new Generator(7);
        var mask = Losses.RandomMask(4000, 8, 0.25, g1);
        var perPosition = mask.to(ScalarType.Float64).mean([0]).data<double>().ToArray();
        Assert.All(perPosition, f => Assert.InRange(f, 0.22, 0.28));
        // Every pair of positions equally likely: 1 / C(8, 2).
        double pair = mask[.., 0].logical_and(mask[.., 5]).to(ScalarType.Float64).mean().item<double>();
        Assert.InRange(pair, 1.0 / 28 - 0.012, 1.0 / 28 + 0.012);
        Assert.False(Same(mask[0], mask[1]) && Same(mask[1], mask[2]) && Same(mask[2], mask[3]));
        using var g2 = new Generator(7);
        Assert.True(Same(Losses.RandomMask(4000, 8, 0.25, g2), mask));
    }

    [Fact]
    public void KeepVisibleKeepsTheOriginalOrderAndRestoreMaskedPutsTokensBack()
    {
        using var scope = NewDisposeScope();
        var tokens = arange(2 * 5 * 3, dtype: ScalarType.Float64).reshape(2, 5, 3).requires_grad_();
        var mask = tensor(new bool[,] { { false, true, false, true, false }, { true, true, false, false, false } });
        var (visible, index) = Losses.KeepVisible(tokens, mask);
        Assert.Equal(ScalarType.Int64, index.dtype);
        Assert.Equal(new long[] { 0, 2, 4, 2, 3, 4 }, index.data<long>().ToArray());
        Assert.True(Same(visible[0], tokens.detach()[0].index_select(0, tensor(new long[] { 0, 2, 4 }))));
        Assert.True(Same(visible[1], tokens.detach()[1, 2..]));

        var maskToken = tensor(new[] { -1.0, -2.0, -3.0 }).requires_grad_();
        var restored = Losses.RestoreMasked(visible, index, maskToken, 5);
        var expected = tokens.detach().masked_fill(mask.unsqueeze(2), 0) + mask.unsqueeze(2).to(ScalarType.Float64) * maskToken.detach();
        Assert.True(Same(restored, expected));
        restored.sum().backward();
        // Each masked position passes its gradient to the mask token; each visible one back to its token.
        Assert.True(Same(maskToken.grad!, full(3, 4.0, dtype: ScalarType.Float64)));
        Assert.True(Same(tokens.grad!, mask.logical_not().unsqueeze(2).expand(2, 5, 3).to(ScalarType.Float64)));

        var ragged = tensor(new bool[,] { { true, false, false }, { true, true, false } });
        var e = Assert.Throws<ArgumentException>(() => Losses.KeepVisible(zeros(2, 3, 4), ragged));
        Assert.Contains("different numbers", e.Message);
    }

    [Fact]
    public void LossesComputeInFp32UnlessEveryInputIsFp64()
    {
        using var scope = NewDisposeScope();
        var z = randn(4, 8, dtype: ScalarType.BFloat16);
        Assert.Equal(ScalarType.Float32, Losses.NtXent(z, z, 0.2).dtype);
        Assert.Equal(ScalarType.Float32, Losses.BarlowTwins(z, z.to(ScalarType.Float64), 0.1).dtype);
        Assert.Equal(ScalarType.Float32, Losses.Byol(z.to(ScalarType.Float16), z).dtype);
        Assert.Equal(ScalarType.Float64, Losses.Byol(z.to(ScalarType.Float64), z.to(ScalarType.Float64)).dtype);
        Assert.Equal(0, Losses.NtXent(z, z, 0.2).dim());
        Assert.Throws<ArgumentException>(() => Losses.Byol(z, z.to(ScalarType.Int32)));
        var e = Assert.Throws<ArgumentException>(() => Losses.NtXent(randn(4, 8), randn(4, 7), 0.2));
        Assert.Contains("[4, 8]", e.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.NtXent(z, z, 0));
    }

    [Fact]
    public void NtXentWithAFakeGatherSumsToTheWholeBatch()
    {
        using var scope = NewDisposeScope();
        var (z1, z2, o1, o2) = (randn(3, 4, dtype: ScalarType.Float64), randn(3, 4, dtype: ScalarType.Float64), randn(3, 4, dtype: ScalarType.Float64), randn(3,
            4, dtype: ScalarType.Float64));
        var mine = F.normalize(cat([z1, z2], 0), dim: -1);
        var theirs = F.normalize(cat([o1, o2], 0), dim: -1);
        double rank0 = Losses.NtXent(z1, z2, 0.3, x => cat([x, theirs], 0), rank: 0).item<double>();
        double rank1 = Losses.NtXent(o1, o2, 0.3, x => cat([mine, x], 0), rank: 1).item<double>();
        double whole = Losses.NtXent(cat([z1, o1], 0), cat([z2, o2], 0), 0.3).item<double>();
        Assert.Equal(whole, (rank0 + rank1) / 2, 12);
        // A gather that does not return whole blocks, or a rank past them, is refused.
        Assert.Throws<ArgumentException>(() => Losses.NtXent(z1, z2, 0.3, x => cat([x, theirs[..2]], 0)));
        Assert.Throws<ArgumentOutOfRangeException>(() => Losses.NtXent(z1, z2, 0.3, x => cat([x, theirs], 0), rank: 2));
    }

    [Fact]
    public void NtXentOnTwoSimulatedRanksHasTheWholeBatchGradient()
    {
        using var scope = NewDisposeScope();
        var z1 = Leaves(2, 3, 5);
        var z2 = Leaves(2, 3, 5);
        using var world = new TwoRanks();
        var losses = world.Run(rank => Losses.NtXent(z1[rank], z2[rank], 0.2, world.Collective(rank, (a, b) => cat([a, b], 0)), rank));
        (losses[0] + losses[1]).backward();

        var (w1, w2) = (Whole(z1), Whole(z2));
        var whole = Losses.NtXent(w1, w2, 0.2);
        whole.backward();
        Assert.Equal(whole.item<double>(), (losses[0].item<double>() + losses[1].item<double>()) / 2, 12);
        // Each rank's gradient is that of the sum of both ranks' losses, i.e. 2× the whole batch's mean loss.
        AssertClose(2 * w1.grad!, cat([z1[0].grad!, z1[1].grad!], 0));
        AssertClose(2 * w2.grad!, cat([z2[0].grad!, z2[1].grad!], 0));
        foreach (var loss in losses) loss.Dispose();
    }

    [Fact]
    public void BarlowTwinsOnTwoSimulatedRanksUsesTheGlobalBatch()
    {
        using var scope = NewDisposeScope();
        var z1 = Leaves(2, 5, 4, offset: 20);
        var z2 = Leaves(2, 5, 4, offset: -3);
        using var world = new TwoRanks();
        var losses = world.Run(rank => Losses.BarlowTwins(z1[rank], z2[rank], 0.2, world.Collective(rank, (a, b) => a + b)));
        (losses[0] + losses[1]).backward();

        var (w1, w2) = (Whole(z1), Whole(z2));
        var whole = Losses.BarlowTwins(w1, w2, 0.2);
        whole.backward();
        Assert.Equal(whole.item<double>(), losses[0].item<double>(), 12);
        Assert.Equal(whole.item<double>(), losses[1].item<double>(), 12);
        AssertClose(2 * w1.grad!, cat([z1[0].grad!, z1[1].grad!], 0));
        AssertClose(2 * w2.grad!, cat([z2[0].grad!, z2[1].grad!], 0));
        foreach (var loss in losses) loss.Dispose();
    }

    static bool Same(Tensor a, Tensor b) => a.shape.SequenceEqual(b.shape) && a.dtype == b.dtype && a.eq(b).all().item<bool>();

    static Tensor[] Leaves(int ranks, long rows, long columns, double offset = 0) =>
        Enumerable.Range(0, ranks).Select(_ => (randn(rows, columns, dtype: ScalarType.Float64) + offset).requires_grad_()).ToArray();

    static Tensor Whole(Tensor[] perRank) => cat(perRank.Select(t => t.detach()).ToArray(), 0).requires_grad_();

    static void AssertClose(Tensor expected, Tensor actual, double tolerance = 1e-10)
    {
        double error = (actual - expected).abs().max().item<double>() / Math.Max(expected.abs().max().item<double>(), 1e-300);
        Assert.True(error < tolerance, $"relative error {error:G3}");
    }

    /// <summary>
    /// Two ranks as two threads, with collectives that exchange tensors in memory: the combined result keeps both
    /// ranks' inputs in one autograd graph, so a backward through both ranks' losses sums the gradients over
    /// ranks as <c>torch.distributed.nn</c>'s collectives do.
    /// </summary>
    sealed class TwoRanks : IDisposable
    {
        readonly Tensor?[] slots = new Tensor?[2];
        readonly Barrier barrier = new(2);

        public Func<Tensor, Tensor> Collective(int rank, Func<Tensor, Tensor, Tensor> combine) => local =>
        {
            slots[rank] = local;
            Sync();
            var result = combine(slots[0]!, slots[1]!);
            Sync();   // neither rank frees its input before the other has combined it
            return result;
        };

        void Sync()
        {
            if (!barrier.SignalAndWait(TimeSpan.FromSeconds(30))) throw new TimeoutException("the other simulated rank did not reach the collective");
        }

        public Tensor[] Run(Func<int, Tensor> body)
        {
            var results = new Tensor[2];
            var errors = new Exception?[2];
            var threads = Enumerable.Range(0, 2).Select(rank => new Thread(() =>
            {
                try { results[rank] = body(rank); }
                catch (Exception e) { errors[rank] = e; barrier.RemoveParticipant(); }
            })).ToArray();
            foreach (var thread in threads) thread.Start();
            foreach (var thread in threads) thread.Join();
            foreach (var error in errors) if (error is not null) throw new AggregateException(error);
            return results;
        }

        public void Dispose() => barrier.Dispose();
    }
}
