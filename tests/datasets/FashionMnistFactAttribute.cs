using Medformer.Datasets.Corpora;
using Xunit;

namespace Medformer.Tests.Datasets;

/// <summary>A fact that needs Debian's Fashion-MNIST files; skipped, saying so, where
/// <see cref="MnistCorpus.FashionMnistFolder"/> is absent (scripts/setup.sh test installs dataset-fashion-mnist).</summary>
public sealed class FashionMnistFactAttribute : FactAttribute
{
    public FashionMnistFactAttribute()
    {
        if (!Directory.Exists(MnistCorpus.FashionMnistFolder))
            Skip = $"Fashion-MNIST is absent: no {MnistCorpus.FashionMnistFolder} (Debian's dataset-fashion-mnist)";
    }
}
