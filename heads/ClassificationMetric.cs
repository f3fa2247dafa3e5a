using Medformer.Datasets.Loading;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// Accuracy and AUC of class probabilities as MedMNIST computes them: multi-class (and ordinal, which MedMNIST scores
/// alike) accuracy of the argmax and the mean one-vs-rest AUC over classes; binary the AUC of the positive class;
/// multi-label the mean per-label accuracy at 0.5 and the mean per-label AUC. A class with no positive or no negative
/// sample is left out of the AUC mean (NaN when none is left).
/// </summary>
public sealed class ClassificationMetric(int classes, bool multiLabel) : HeadMetric
{
    readonly List<float[]> scores = [];
    readonly List<long[]> labels = [];

    public override void Update(Tensor predictions, Batch batch)
    {
        if (predictions.dim() != 2 || predictions.shape[0] != batch.Count || predictions.shape[1] != classes)
            throw new ArgumentException($"predictions [{string.Join(",", predictions.shape)}] must be [{batch.Count},{classes}]");
        using var cpu = predictions.to(ScalarType.Float32).cpu().contiguous();
        var values = cpu.data<float>().ToArray();
        for (int i = 0; i < batch.Count; i++)
        {
            scores.Add(values[(i * classes)..((i + 1) * classes)]);
            labels.Add(batch.Metas[i].Labels);
        }
    }

    public override IReadOnlyDictionary<string, double> Compute()
    {
        if (scores.Count == 0) throw new InvalidOperationException("no predictions to score");
        double accuracy;
        var aucs = new List<double>();
        if (multiLabel)
        {
            accuracy = scores.Select((s, i) => s.Zip(labels[i], (p, y) => (p > 0.5 ? 1 : 0) == y ? 1.0 : 0.0).Average()).Average();
            for (int k = 0; k < classes; k++) aucs.Add(Auc(scores.Select(s => (double)s[k]).ToArray(), labels.Select(l => l[k] == 1).ToArray()));
        }
        else
        {
            accuracy = scores.Select((s, i) => Array.IndexOf(s, s.Max()) == labels[i][0] ? 1.0 : 0.0).Average();
            var ks = classes == 2 ? [1] : Enumerable.Range(0, classes);
            foreach (int k in ks) aucs.Add(Auc(scores.Select(s => (double)s[k]).ToArray(), labels.Select(l => l[0] == k).ToArray()));
        }
        var defined = aucs.Where(double.IsFinite).ToList();
        return new Dictionary<string, double>
        {
            ["accuracy"] = accuracy,
            ["auc"] = defined.Count > 0 ? defined.Average() : double.NaN,
            ["samples"] = scores.Count,
        };
    }

    /// <summary>The area under the ROC curve: the Mann–Whitney statistic with ties at half (average ranks); NaN when a side is empty.</summary>
    public static double Auc(double[] score, bool[] positive)
    {
        long positives = positive.Count(p => p), negatives = positive.Length - positives;
        if (positives == 0 || negatives == 0) return double.NaN;
        var order = Enumerable.Range(0, score.Length).OrderBy(i => score[i]).ToArray();
        double rankSum = 0;
        for (int start = 0; start < order.Length;)
        {
            int end = start;
            while (end + 1 < order.Length && score[order[end + 1]] == score[order[start]]) end++;
            double rank = (start + end) / 2.0 + 1;  // ties share their average rank
            for (int j = start; j <= end; j++)
                if (positive[order[j]]) rankSum += rank;
            start = end + 1;
        }
        return (rankSum - positives * (positives + 1) / 2.0) / ((double)positives * negatives);
    }
}
