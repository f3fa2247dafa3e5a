namespace Medformer.Datasets.Transforms;

/// <summary>Two augmented views of one image, each with its Coordinates into that image.</summary>
public sealed record ViewPair(Sample First, Sample Second) : IDisposable
{
    public void Dispose()
    {
        First.Dispose();
        Second.Dispose();
    }
}
