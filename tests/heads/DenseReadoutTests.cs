using Medformer.Heads;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

public sealed class DenseReadoutTests
{
    [Theory]
    [InlineData(new long[] { 6, 10 }, 0, 60)]
    [InlineData(new long[] { 6, 10 }, 13, 29)]
    [InlineData(new long[] { 3, 5, 7 }, 40, 65)]
    public void ChunksOfPositionQueriesAreRowsOfTheWholeGridsBitForBit(long[] grid, long start, long count)
    {
        using var scope = NewDisposeScope();
        var whole = Fourier.GridFeatures(grid, 4);
        Assert.True(whole.narrow(0, start, count).eq(Fourier.GridFeatures(grid, 4, start, count)).all().item<bool>());
        Seeding.SeedEverything(0);
        using var model = new MedformerModel(SegmentationHeadTests.Config);
        Assert.True(model.PositionQueries(grid).narrow(1, start, count).eq(model.PositionQueries(grid, start, count)).all().item<bool>());
        Assert.Throws<ArgumentException>(() => Fourier.GridFeatures(grid, 4, start + 1, grid.Aggregate(1L, (a, n) => a * n)));
    }

    [Theory]
    [InlineData(3)]
    [InlineData(0)]
    public void TheOutputDoesNotDependOnTheChunkSize(int pixelContext)
    {
        using var scope = NewDisposeScope();
        Seeding.SeedEverything(1);
        var config = SegmentationHeadTests.Config;
        using var model = new MedformerModel(config);
        using var readout = new DenseReadout(config, outputs: 3, pixelContext);
        using (no_grad())
            foreach (var p in readout.parameters()) p.normal_();   // not the zero-initialised output layer
        var images = randn(2, 1, 8, 12);
        var latents = model.forward(images, [new LatentKey("chest", "ct", "segmentation"), new LatentKey("brain", "mri", "segmentation")]);
        var whole = readout.Forward(model, latents, images, [8, 12]);
        Assert.Equal([2L, 3, 8, 12], whole.shape);
        Assert.True(whole.allclose(readout.Forward(model, latents, images, [8, 12], chunk: 7), rtol: 1e-5, atol: 1e-5));
        Assert.Equal([2L, 3, 16, 24], readout.Forward(model, latents, images, [16, 24], chunk: 50).shape);   // any output resolution
    }
}
