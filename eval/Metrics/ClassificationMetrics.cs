using static TorchSharp.torch;

namespace Medformer.Eval.Metrics;

/// <summary>
/// Accuracy and AUC exactly as MedMNIST's evaluator (medmnist/evaluator.py, v3: getACC, getAUC) computes them for
/// each task type, and top-k accuracy as scikit-learn's top_k_accuracy_score. Scores are [N,C] (probabilities or
/// any monotone score); labels [N] or [N,1] (multi-class, binary-class, ordinal-regression) or [N,L] of 0/1
/// (multi-label). Task names are <see cref="Datasets.Corpora.Vocabulary.Tasks"/>'s.
/// <list type="bullet">
/// <item>multi-class and ordinal-regression: ACC of the arg-max (the first of equal maxima, as NumPy); AUC the mean
/// over classes of one-vs-rest ROC AUC.</item>
/// <item>binary-class: the positive score is the last column; ACC of score &gt; threshold (0.5: a score of exactly
/// 0.5 is negative); ROC AUC of that column.</item>
/// <item>multi-label: ACC the mean over labels of the accuracy of score &gt; threshold; AUC the mean over labels.</item>
/// </list>
/// ROC AUC counts ties as half (the Mann–Whitney statistic, which is scikit-learn's trapezoidal area). A class or
/// label whose truth has one value only leaves its AUC undefined: an <see cref="ArgumentException"/> says which,
/// as scikit-learn's ValueError does.
/// </summary>
public static class ClassificationMetrics
{
    public static IReadOnlyList<string> TaskTypes { get; } = ["multi-class", "multi-label", "binary-class", "ordinal-regression"];

    public static double Accuracy(Tensor scores, Tensor labels, string task, double threshold = 0.5)
    {
        var (s, y, n, c) = Read(scores, labels, task);
        switch (task)
        {
            case "multi-label":
                double sum = 0;
                for (int j = 0; j < c; j++)
                {
                    int right = 0;
                    for (int i = 0; i < n; i++)
                        if ((s[i * c + j] > threshold ? 1 : 0) == y[i * c + j]) right++;
                    sum += (double)right / n;
                }
                return sum / c;
            case "binary-class":
                return Enumerable.Range(0, n).Count(i => (s[i * c + c - 1] > threshold ? 1 : 0) == y[i]) / (double)n;
            default:
                return Enumerable.Range(0, n).Count(i => ArgMax(s, i * c, c) == y[i]) / (double)n;
        }
    }

    public static double Auc(Tensor scores, Tensor labels, string task)
    {
        var (s, y, n, c) = Read(scores, labels, task);
        double[] Column(int j) => [.. Enumerable.Range(0, n).Select(i => s[i * c + j])];
        switch (task)
        {
            case "multi-label":
                return Enumerable.Range(0, c).Average(j => RocAuc(Column(j), [.. Enumerable.Range(0, n).Select(i => y[i * c + j] == 1)], $"label {j}"));
            case "binary-class":
                return RocAuc(Column(c - 1), [.. y.Select(v => v == 1)], "the positive class");
            default:
                return Enumerable.Range(0, c).Average(j => RocAuc(Column(j), [.. y.Select(v => v == j)], $"class {j}"));
        }
    }

    /// <summary>
    /// The fraction of samples whose label is among the <paramref name="k"/> highest scores (labels [N]); equal
    /// scores rank the higher class index first, as scikit-learn's (stable sort, reversed).
    /// </summary>
    public static double TopKAccuracy(Tensor scores, Tensor labels, int k)
    {
        var (s, y, n, c) = Read(scores, labels, "multi-class");
        if (k < 1) throw new ArgumentException($"top-k accuracy: k {k} must be at least 1");
        int hits = 0;
        for (int i = 0; i < n; i++)
        {
            int row = i * c;
            var ranked = Enumerable.Range(0, c).OrderByDescending(j => s[row + j]).ThenByDescending(j => j).Take(k);
            if (ranked.Contains((int)y[i])) hits++;
        }
        return (double)hits / n;
    }

    /// <summary>
    /// ROC AUC of <paramref name="scores"/> for the positives: the probability that a random positive outscores a
    /// random negative, ties counting half (from mid-ranks).
    /// </summary>
    public static double RocAuc(double[] scores, bool[] positive, string what = "the positives")
    {
        int n = scores.Length, positives = positive.Count(p => p);
        if (positives == 0 || positives == n)
            throw new ArgumentException($"AUC of {what}: only one class present in the truth ({(positives == 0 ? "no" : "all")} " +
                $"positives of {n}); ROC AUC is not defined");
        var order = Enumerable.Range(0, n).OrderBy(i => scores[i]).ToArray();
        double rankSum = 0;
        for (int start = 0; start < n;)
        {
            int end = start;
            while (end + 1 < n && scores[order[end + 1]] == scores[order[start]]) end++;
            double midRank = (start + end) / 2.0 + 1;   // 1-based mean rank of the tied run
            for (int t = start; t <= end; t++)
                if (positive[order[t]]) rankSum += midRank;
            start = end + 1;
        }
        double negatives = n - positives;
        return (rankSum - positives * (positives + 1) / 2.0) / (positives * negatives);
    }

    static int ArgMax(double[] s, int offset, int count)
    {
        int best = 0;
        for (int j = 1; j < count; j++)
            if (s[offset + j] > s[offset + best]) best = j;
        return best;
    }

    /// <summary>Scores as float64 [N·C] and labels [N] (or [N·L] for multi-label), checked against each other.</summary>
    static (double[] Scores, long[] Labels, int N, int C) Read(Tensor scores, Tensor labels, string task)
    {
        if (!TaskTypes.Contains(task)) throw new ArgumentException($"task '{task}': expected one of {string.Join(", ", TaskTypes)}");
        if (scores.dim() != 2) throw new ArgumentException($"scores [{string.Join(",", scores.shape)}] must be [N,C]");
        int n = (int)scores.shape[0], c = (int)scores.shape[1];
        if (n == 0) throw new ArgumentException("no samples to score");
        using var s = scores.detach().to(ScalarType.Float64).cpu().contiguous();
        using var y = labels.detach().to(ScalarType.Int64).cpu().contiguous();
        if (task == "multi-label")
        {
            if (y.dim() != 2 || y.shape[0] != n || y.shape[1] != c)
                throw new ArgumentException($"multi-label: labels [{string.Join(",", labels.shape)}] must be [N,L] like the scores [{n},{c}]");
        }
        else if (!(y.dim() == 1 && y.shape[0] == n) && !(y.dim() == 2 && y.shape[0] == n && y.shape[1] == 1))
            throw new ArgumentException($"{task}: labels [{string.Join(",", labels.shape)}] must be [N] or [N,1] with N = {n}");
        var values = y.data<long>().ToArray();
        long max = task == "multi-label" || task == "binary-class" ? 1 : c - 1;
        if (values.Any(v => v < 0 || v > max))
            throw new ArgumentException($"{task}: a label lies outside 0…{max} (scores have {c} columns): {values.First(v => v < 0 || v > max)}");
        return (s.data<double>().ToArray(), values, n, c);
    }
}
