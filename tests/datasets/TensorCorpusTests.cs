using Medformer.Datasets.Corpora;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

public sealed class TensorCorpusTests
{
    [Fact]
    public void ACorpusBuiltInsideADisposeScopeOutlivesIt()
    {
        TensorCorpus corpus;
        using (NewDisposeScope())
        {
            var images = arange(2 * 1 * 4 * 4, ScalarType.Float32).reshape(2, 1, 4, 4);
            var labels = tensor(new long[] { 3, 7 });
            corpus = new TensorCorpus("scoped", images, labels);
        }
        using (corpus)
        using (var sample = corpus.Get(1))
        {
            Assert.Equal(16f, sample.Image[0, 0, 0].item<float>());
            Assert.Equal(7L, sample.Meta.Labels[0]);
        }
    }

    [Fact]
    public void TheCorpusKeepsACopyThatLaterWritesDoNotReach()
    {
        using var images = zeros(1, 1, 2, 2);
        using var corpus = new TensorCorpus("copy", images);
        images.fill_(5);
        using var sample = corpus.Get(0);
        Assert.Equal(0f, sample.Image.sum().item<float>());
    }
}
