using Medformer.Datasets.Corpora;
using Medformer.Runtime;
using static TorchSharp.torch;

namespace Medformer.Tests;

/// <summary>The trainer tests' corpus: a left-to-right ramp (so every quarter turn looks different) and a bright bar at varying places, on noise.</summary>
static class Squares
{
    public static TensorCorpus Corpus(int count, long seed)
    {
        Seeding.SeedEverything(seed);
        using var images = Images(count);
        // The corpus keeps its own handle: built outside the scope, which would dispose it with the temporaries.
        return new TensorCorpus("squares", images, organ: "chest", modality: "xray");
    }

    static Tensor Images(int count)
    {
        using var scope = NewDisposeScope();
        var images = randn(count, 1, 16, 16) * 0.1 + linspace(0, 1, 16).view(1, 1, 1, 16);
        for (int i = 0; i < count; i++)
        {
            int r = i % 7, c = (i * 5) % 9;
            images[i, 0, r..(r + 6), c..(c + 4)] += 1;
        }
        return scope.MoveToOuter(images);
    }
}
