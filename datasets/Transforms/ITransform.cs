namespace Medformer.Datasets.Transforms;

/// <summary>
/// One step of a pipeline (MONAI's small composable transforms): a sample in, a new sample out, 2D or 3D alike.
/// Random transforms draw only from <paramref name="rng"/>, which the loader derives from (seed, epoch, sample
/// index), so a sample's augmentation never depends on which worker ran it or in what order. Spatial transforms
/// apply the same geometry to <see cref="Sample.Image"/>, <see cref="Sample.Target"/> (nearest-neighbour for
/// masks) and <see cref="Sample.Coordinates"/>. A transform never disposes its input (see <see cref="Sample"/>).
/// </summary>
public interface ITransform
{
    Sample Apply(Sample sample, Random rng);
}
