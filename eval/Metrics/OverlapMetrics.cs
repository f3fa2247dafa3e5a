using static TorchSharp.torch;

namespace Medformer.Eval.Metrics;

/// <summary>
/// Dice and IoU (Jaccard) per class between two label maps of the same shape (class index per pixel or voxel):
/// Dice = 2|P∩G| / (|P| + |G|), IoU = |P∩G| / |P∪G| over the class's pixels.
/// <para>
/// Empty ground truth: where a class is absent from the ground truth its score is NaN, whatever the prediction,
/// and the means here skip NaN: MONAI's DiceMetric with ignore_empty=True. (A class that is absent and also not
/// predicted says nothing about the segmentation, and one that is absent but predicted would score 0 whatever the
/// size of the false positive; the false positives count instead in the classes whose truth is present.)
/// </para>
/// </summary>
public static class OverlapMetrics
{
    /// <summary>Dice per class 0 … classes−1 (NaN where the truth lacks the class).</summary>
    public static double[] Dice(Tensor predicted, Tensor truth, int classes) =>
        PerClass(predicted, truth, classes, (intersection, p, g) => 2.0 * intersection / (p + g));

    /// <summary>IoU per class 0 … classes−1 (NaN where the truth lacks the class).</summary>
    public static double[] IoU(Tensor predicted, Tensor truth, int classes) =>
        PerClass(predicted, truth, classes, (intersection, p, g) => (double)intersection / (p + g - intersection));

    /// <summary>The mean of the finite entries; NaN when there are none.</summary>
    public static double NanMean(IEnumerable<double> values)
    {
        var kept = values.Where(double.IsFinite).ToList();
        return kept.Count == 0 ? double.NaN : kept.Average();
    }

    static double[] PerClass(Tensor predicted, Tensor truth, int classes, Func<long, long, long, double> score)
    {
        if (!predicted.shape.SequenceEqual(truth.shape))
            throw new ArgumentException($"label maps differ in shape: predicted [{string.Join(",", predicted.shape)}], " +
                $"truth [{string.Join(",", truth.shape)}]");
        if (classes < 1) throw new ArgumentException($"classes {classes} must be at least 1");
        using var p = predicted.detach().to(ScalarType.Int64).cpu().contiguous();
        using var g = truth.detach().to(ScalarType.Int64).cpu().contiguous();
        var pv = p.data<long>().ToArray();
        var gv = g.data<long>().ToArray();
        var (inter, pc, gc) = (new long[classes], new long[classes], new long[classes]);
        for (int i = 0; i < pv.Length; i++)
        {
            long a = pv[i], b = gv[i];
            if (a < 0 || a >= classes || b < 0 || b >= classes)
                throw new ArgumentException($"label {(a < 0 || a >= classes ? a : b)} at element {i} lies outside the {classes} classes");
            pc[a]++;
            gc[b]++;
            if (a == b) inter[a]++;
        }
        return [.. Enumerable.Range(0, classes).Select(c => gc[c] == 0 ? double.NaN : score(inter[c], pc[c], gc[c]))];
    }
}
