namespace Medformer.Datasets.Transforms;

/// <summary>
/// How a resampling transform interpolates the image (and a float target): <see cref="Linear"/> is bilinear in 2D and
/// trilinear in 3D; <see cref="Nearest"/> takes the nearest pixel centre (PyTorch's "nearest-exact"). Masks are always
/// resampled with <see cref="Nearest"/>.
/// </summary>
public enum Interpolation
{
    Linear,
    Nearest,
}
