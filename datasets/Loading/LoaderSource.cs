using Medformer.Datasets.Corpora;
using Medformer.Datasets.Transforms;

namespace Medformer.Datasets.Loading;

/// <summary>
/// One corpus in a loader's mixture: how often it is drawn (<paramref name="Weight"/>, relative to the other
/// sources), the pipeline each sample goes through, and how many independently augmented views of each sample a
/// batch carries (2 for SimCLR, BYOL, Barlow Twins, PixPro). <paramref name="ViewTransforms"/> gives each view its
/// own pipeline instead (FixMatch's weak and strong views, BYOL's asymmetric ones): as many views as pipelines.
/// With <paramref name="TrackCoordinates"/>, each sample gets an identity coordinate grid before the pipeline, so
/// every view knows which original pixel each of its pixels shows (<see cref="Sample.Coordinates"/>).
/// </summary>
public sealed record LoaderSource(ICorpus Corpus, double Weight = 1.0, ITransform? Transform = null, int Views = 1, bool TrackCoordinates = false,
    IReadOnlyList<ITransform>? ViewTransforms = null)
{
    /// <summary>How many views of each sample a batch carries.</summary>
    public int ViewCount => ViewTransforms?.Count ?? Views;

    /// <summary>View <paramref name="view"/>'s pipeline (null: the sample as it is).</summary>
    public ITransform? TransformOf(int view) => ViewTransforms is { } transforms ? transforms[view] : Transform;

    internal void Validate()
    {
        if (!(Weight > 0) || double.IsInfinity(Weight))
            throw new ArgumentException($"corpus '{Corpus.Name}': weight {Weight} must be a positive finite number");
        if (Views < 1) throw new ArgumentException($"corpus '{Corpus.Name}': views {Views} must be at least 1");
        if (ViewTransforms is { } transforms)
        {
            if (transforms.Count == 0) throw new ArgumentException($"corpus '{Corpus.Name}': view transforms must name at least one pipeline");
            if (Transform is not null || Views != 1)
                throw new ArgumentException($"corpus '{Corpus.Name}': give either view transforms ({transforms.Count} views) or a " +
                    "transform and a number of views, not both");
        }
        if (Corpus.Count < 1) throw new ArgumentException($"corpus '{Corpus.Name}' is empty");
    }
}
