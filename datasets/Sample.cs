using static TorchSharp.torch;

namespace Medformer.Datasets;

/// <summary>
/// One sample between the corpus and the batch: an image [C,H,W] or volume [C,D,H,W] (float32), its meta, and the
/// tensors that must follow every spatial transform of the image.
/// <para>
/// <see cref="Target"/>: a segmentation mask [1,…] (int64 class per pixel) or a target image [C',…] (image-to-image
/// tasks), on the same grid as <see cref="Image"/>. <see cref="Coordinates"/>: [A,…] float32, for each pixel the
/// coordinates (in pixels, slowest axis first) of the point of the original image it shows; spatial transforms
/// carry it along, so two views of one image know which of their pixels correspond (PixPro).
/// </para>
/// <para>
/// Ownership: a transform returns a new sample and never disposes its input; run a pipeline inside a
/// <c>DisposeScope</c> and move out what is kept (the loader does). <see cref="Dispose"/> frees all three tensors.
/// </para>
/// </summary>
public sealed record Sample(Tensor Image, SampleMeta Meta, Tensor? Target = null, Tensor? Coordinates = null) : IDisposable
{
    /// <summary>Spatial extent ([H,W] or [D,H,W]).</summary>
    public long[] SpatialShape => Image.shape[1..];

    public void Dispose()
    {
        Image.Dispose();
        Target?.Dispose();
        Coordinates?.Dispose();
    }
}
