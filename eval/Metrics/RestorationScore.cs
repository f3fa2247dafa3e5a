using static TorchSharp.torch;

namespace Medformer.Eval.Metrics;

/// <summary>
/// The seed talk's restoration score for low-dose PET: how much of the distance from the low-dose image (PET60) to
/// the full-dose reference (PET90) the restored image (PETr) removes, in percent:
/// 100 · (1 − Δr/Δo), Δr = metric(PETr, PET90), Δo = metric(PET60, PET90), for metric = MSE and metric = 1 − SSIM.
/// 100 is a perfect restoration, 0 no better than the input, negative worse. Δo = 0 (the input already equals the
/// reference) leaves the score undefined: NaN, which means skip.
/// </summary>
public static class RestorationScore
{
    public static double Score(double deltaRestored, double deltaOriginal) =>
        deltaOriginal == 0 ? double.NaN : 100 * (1 - deltaRestored / deltaOriginal);

    public static double Mse(Tensor restored, Tensor lowDose, Tensor reference) =>
        Score(ImageMetrics.Mse(restored, reference), ImageMetrics.Mse(lowDose, reference));

    public static double Ssim(Tensor restored, Tensor lowDose, Tensor reference, double dataRange) =>
        Score(1 - ImageMetrics.Ssim(restored, reference, dataRange), 1 - ImageMetrics.Ssim(lowDose, reference, dataRange));
}
