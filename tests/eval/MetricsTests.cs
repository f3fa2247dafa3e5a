using Medformer.Eval.Metrics;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Eval;

/// <summary>
/// Every metric against the numbers that tests/reference/eval_metrics.py computed once with Debian's scikit-learn
/// 1.2, scikit-image 0.19 and SciPy 1.10 (MedMNIST's evaluator, MONAI's Hausdorff distance restated with SciPy) on
/// inputs that <see cref="Lcg"/> rebuilds here bit for bit.
/// </summary>
public sealed class MetricsTests
{
    /// <summary>The reference script's generator: x ← (1103515245 x + 12345) mod 2^31.</summary>
    sealed class Lcg(long seed)
    {
        long state = seed;

        long Next() => state = (1103515245 * state + 12345) % (1L << 31);

        public double[] Uniform(int count) => [.. Enumerable.Range(0, count).Select(_ => Next() / (double)(1L << 31))];

        public long[] Integers(long high, int count) => [.. Enumerable.Range(0, count).Select(_ => (Next() >> 16) % high)];
    }

    static Tensor Matrix(double[] values, long rows, long columns) => tensor(values, ScalarType.Float64).reshape(rows, columns);

    [Fact]
    public void MultiClassAccuracyAndAucAsMedMnist()
    {
        var g = new Lcg(11);
        using var labels = tensor(g.Integers(5, 40));
        using var scores = Matrix([.. g.Uniform(200).Select(v => Math.Floor(v * 8) / 8)], 40, 5);  // ties in both
        Assert.Equal(0.4783894714716288, ClassificationMetrics.Auc(scores, labels, "multi-class"), 12);
        Assert.Equal(0.1, ClassificationMetrics.Accuracy(scores, labels, "multi-class"), 12);
        // Ordinal regression is scored as multi-class; labels may be [N,1] as MedMNIST stores them.
        using var column = labels.unsqueeze(1);
        Assert.Equal(0.4783894714716288, ClassificationMetrics.Auc(scores, column, "ordinal-regression"), 12);
        Assert.Equal(0.1, ClassificationMetrics.Accuracy(scores, column, "ordinal-regression"), 12);
    }

    [Fact]
    public void TopKAccuracyAsScikitLearn()
    {
        var g = new Lcg(12);
        using var labels = tensor(g.Integers(5, 40));
        using var scores = Matrix(g.Uniform(200), 40, 5);
        Assert.Equal(0.15, ClassificationMetrics.TopKAccuracy(scores, labels, 1), 12);
        Assert.Equal(0.35, ClassificationMetrics.TopKAccuracy(scores, labels, 2), 12);
        Assert.Equal(0.525, ClassificationMetrics.TopKAccuracy(scores, labels, 3), 12);
        Assert.Equal(1.0, ClassificationMetrics.TopKAccuracy(scores, labels, 5), 12);
    }

    [Fact]
    public void BinaryClassUsesThePositiveColumnAndAStrictThreshold()
    {
        var g = new Lcg(13);
        using var labels = tensor(g.Integers(2, 30));
        var values = g.Uniform(60);
        values[3 * 2 + 1] = 0.5;
        using var scores = Matrix(values, 30, 2);
        Assert.Equal(0.587962962962963, ClassificationMetrics.Auc(scores, labels, "binary-class"), 12);
        Assert.Equal(0.5333333333333333, ClassificationMetrics.Accuracy(scores, labels, "binary-class"), 12);
    }

    [Fact]
    public void MultiLabelAveragesOverLabels()
    {
        var g = new Lcg(14);
        using var labels = tensor(g.Integers(2, 120)).reshape(30, 4);
        var values = g.Uniform(120);
        values[0] = 0.5;
        values[5 * 4 + 2] = 0.5;
        using var scores = Matrix(values, 30, 4);
        Assert.Equal(0.36491732804232807, ClassificationMetrics.Auc(scores, labels, "multi-label"), 12);
        Assert.Equal(0.45833333333333337, ClassificationMetrics.Accuracy(scores, labels, "multi-label"), 12);
    }

    [Fact]
    public void AucNeedsBothClassesAndLabelsMustFitTheScores()
    {
        using var scores = Matrix([0.2, 0.8, 0.6, 0.4], 2, 2);
        using var same = tensor(new long[] { 1, 1 });
        Assert.Contains("only one class", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Auc(scores, same, "binary-class")).Message);
        using var outside = tensor(new long[] { 0, 2 });
        Assert.Contains("outside", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Accuracy(scores, outside, "multi-class")).Message);
        Assert.Contains("task 'regression'", Assert.Throws<ArgumentException>(() => ClassificationMetrics.Accuracy(scores, same, "regression")).Message);
        // Perfect ranking, and every tie: the AUC's two ends and its middle.
        Assert.Equal(1.0, ClassificationMetrics.RocAuc([0.1, 0.2, 0.9], [false, false, true]));
        Assert.Equal(0.5, ClassificationMetrics.RocAuc([0.3, 0.3, 0.3], [false, true, true]));
    }

    [Fact]
    public void DiceAndIoUPerClassWithEmptyTruthAsNaN()
    {
        var g = new Lcg(21);
        using var truth = tensor(g.Integers(2, 120)).reshape(12, 10);
        using var predicted = tensor(g.Integers(3, 120)).reshape(12, 10);
        var dice = OverlapMetrics.Dice(predicted, truth, 3);
        var iou = OverlapMetrics.IoU(predicted, truth, 3);
        Assert.Equal(0.45217391304347826, dice[0], 12);
        Assert.Equal(0.3146067415730337, dice[1], 12);
        Assert.True(double.IsNaN(dice[2]), "class 2 is absent from the truth: NaN, though predicted");
        Assert.Equal(0.29213483146067415, iou[0], 12);
        Assert.Equal(0.18666666666666668, iou[1], 12);
        Assert.True(double.IsNaN(iou[2]));
        Assert.Equal((0.45217391304347826 + 0.3146067415730337) / 2, OverlapMetrics.NanMean(dice), 12);
        Assert.True(double.IsNaN(OverlapMetrics.NanMean([double.NaN])));
        using var same = truth.clone();
        Assert.Equal([1.0, 1.0], OverlapMetrics.Dice(same, truth, 3)[..2]);
    }

    static Tensor Ellipse(long[] shape, double[] center, double[] radii)
    {
        var mask = new bool[shape.Aggregate(1L, (a, n) => a * n)];
        for (long i = 0; i < mask.Length; i++)
        {
            double sum = 0;
            long rest = i;
            for (int a = shape.Length - 1; a >= 0; a--)
            {
                long x = rest % shape[a];
                rest /= shape[a];
                sum += Math.Pow((x - center[a]) / radii[a], 2);
            }
            mask[i] = sum <= 1.0;
        }
        return tensor(mask).reshape(shape);
    }

    [Fact]
    public void Hausdorff95In2DAnd3DAsMonaiWithSpacing()
    {
        using var truth = Ellipse([40, 36], [18, 17], [11, 8]);
        using var predicted = Ellipse([40, 36], [20, 15], [9, 10]);
        predicted[2..5, 30..34] = tensor(true);
        Assert.Equal(13.574789170137738, SurfaceDistance.Hausdorff95(predicted, truth, [0.8, 1.3]), 9);
        Assert.Equal(12.198307563886631, SurfaceDistance.Hausdorff95(predicted, truth, [1.0, 1.0]), 9);

        using var truth3 = Ellipse([20, 24, 22], [10, 12, 11], [6, 8, 7]);
        using var predicted3 = Ellipse([20, 24, 22], [9, 13, 10], [7, 6, 8]);
        predicted3[1..3, 1..3, 18..21] = tensor(true);
        Assert.Equal(3.432200460346103, SurfaceDistance.Hausdorff95(predicted3, truth3, [2.0, 0.7, 0.9]), 9);
    }

    [Fact]
    public void HausdorffOfEmptyMasksIsNaNOrInfinite()
    {
        using var empty = zeros(8, 8, dtype: ScalarType.Bool);
        using var dot = zeros(8, 8, dtype: ScalarType.Bool);
        dot[3, 3] = tensor(true);
        Assert.True(double.IsNaN(SurfaceDistance.Hausdorff95(empty, empty, [1.0, 1.0])));
        Assert.True(double.IsPositiveInfinity(SurfaceDistance.Hausdorff95(dot, empty, [1.0, 1.0])));
        Assert.True(double.IsPositiveInfinity(SurfaceDistance.Hausdorff95(empty, dot, [1.0, 1.0])));
        Assert.Equal(0.0, SurfaceDistance.Hausdorff95(dot, dot, [1.0, 1.0]));
        using var labels = zeros(8, 8, dtype: ScalarType.Int64);
        var perClass = SurfaceDistance.Hausdorff95PerClass(labels, labels, 2, [1.0, 1.0]);
        Assert.Equal(0.0, perClass[0]);
        Assert.True(double.IsNaN(perClass[1]));
        Assert.Contains("one spacing per axis", Assert.Throws<ArgumentException>(() => SurfaceDistance.Hausdorff95(dot, dot, [1.0])).Message);
    }

    static (Tensor Full, Tensor Low, Tensor Restored) Images2d()
    {
        var g = new Lcg(31);
        var full = tensor(g.Uniform(480), ScalarType.Float64).reshape(24, 20) * 2.0 - 0.5;
        var low = full + (tensor(g.Uniform(480), ScalarType.Float64).reshape(24, 20) - 0.5) * 0.6;
        var restored = full + (tensor(g.Uniform(480), ScalarType.Float64).reshape(24, 20) - 0.5) * 0.25;
        return (full, low, restored);
    }

    static (Tensor Full, Tensor Low, Tensor Restored) Images3d()
    {
        var g = new Lcg(32);
        var full = tensor(g.Uniform(14 * 13 * 12), ScalarType.Float64).reshape(14, 13, 12);
        var low = (full + (tensor(g.Uniform(14 * 13 * 12), ScalarType.Float64).reshape(14, 13, 12) - 0.5) * 0.4).clamp(0, 1);
        var restored = (full + (tensor(g.Uniform(14 * 13 * 12), ScalarType.Float64).reshape(14, 13, 12) - 0.5) * 0.2).clamp(0, 1);
        return (full, low, restored);
    }

    [Fact]
    public void MsePsnrSsimAndRestorationScoreIn2DAsScikitImage()
    {
        using var scope = NewDisposeScope();
        var (full, low, restored) = Images2d();
        Assert.Equal(0.028947464067197413, ImageMetrics.Mse(low, full), 14);
        Assert.Equal(21.40449467819345, ImageMetrics.Psnr(low, full, 2.0), 10);
        Assert.Equal(0.9585113658300993, ImageMetrics.Ssim(low, full, 2.0), 12);
        Assert.Equal(0.9919523087069341, ImageMetrics.Ssim(restored, full, 2.0), 12);
        Assert.Equal(82.82681775673773, RestorationScore.Mse(restored, low, full), 9);
        Assert.Equal(80.60266033316566, RestorationScore.Ssim(restored, low, full, 2.0), 9);
        Assert.Equal(1.0, ImageMetrics.Ssim(full, full, 2.0), 12);
        Assert.True(double.IsNaN(RestorationScore.Mse(restored, full, full)), "Δo = 0: undefined");
        Assert.Contains("11-pixel Gaussian window", Assert.Throws<ArgumentException>(() => ImageMetrics.Ssim(full[..10], low[..10], 2.0)).Message);
    }

    [Fact]
    public void MsePsnrSsimAndRestorationScoreIn3DAsScikitImage()
    {
        using var scope = NewDisposeScope();
        var (full, low, restored) = Images3d();
        Assert.Equal(0.012012629982106261, ImageMetrics.Mse(low, full), 14);
        Assert.Equal(19.203619000346503, ImageMetrics.Psnr(low, full, 1.0), 10);
        Assert.Equal(0.9245129715361907, ImageMetrics.Ssim(low, full, 1.0), 12);
        Assert.Equal(0.9817347022031119, ImageMetrics.Ssim(restored, full, 1.0), 12);
        Assert.Equal(74.27462169813089, RestorationScore.Mse(restored, low, full), 9);
        Assert.Equal(75.80339540634449, RestorationScore.Ssim(restored, low, full, 1.0), 9);
    }
}
