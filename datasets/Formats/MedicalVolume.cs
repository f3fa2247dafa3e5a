using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Datasets.Formats;

/// <summary>
/// What every reader of a medical file (NIfTI, DICOM, npy) gives: voxels, geometry and the header as text.
/// <para>
/// <see cref="Voxels"/> is [D,H,W] for a volume, [H,W] for a single slice, or [T,D,H,W] / [C,D,H,W] with a leading
/// channel or time axis, slowest axis first (C order: W varies fastest). The values are the stored ones with the
/// file's scaling applied (NIfTI scl_slope/scl_inter, DICOM rescale slope/intercept, so CT is in Hounsfield units),
/// as float32 when a scaling applied, else in the file's own dtype. <see cref="Spacing"/> has one entry per spatial
/// axis of <see cref="Voxels"/>, in the same order (mm). <see cref="Affine"/> maps a voxel index (i along W, j along
/// H, k along D, 1) to world coordinates in mm, in the file's own convention (<see cref="Frame"/>).
/// </para>
/// </summary>
public sealed record MedicalVolume(
    Tensor Voxels,
    double[] Spacing,
    double[,] Affine,
    string Frame,
    string StoredType,
    string SourceFile,
    IReadOnlyList<KeyValuePair<string, string>> Header) : IDisposable
{
    public void Dispose() => Voxels.Dispose();
}
