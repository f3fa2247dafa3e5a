namespace Medformer.Datasets.Transforms;

/// <summary>
/// A transform whose output includes a label that is not an image (a pretext task's answer: the jigsaw permutation's
/// index, the rotation class, the MAE patch mask). It comes back typed, next to the sample, rather than inside the
/// meta: <c>var (view, label) = jigsaw.Apply(sample, rng)</c>. The same rules as <see cref="ITransform"/> hold: the
/// input is never disposed, all randomness comes from <paramref name="rng"/>, and a tensor label belongs to the caller.
/// </summary>
public interface ILabelledTransform<TLabel>
{
    (Sample Sample, TLabel Label) Apply(Sample sample, Random rng);
}
