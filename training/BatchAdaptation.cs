using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>How a subset of the per-sample gradients is scored (higher-is-better is handled by the selector).</summary>
public enum AdaptationStrategy
{
    /// <summary>Off: every sample of the batch, a fixed batch size.</summary>
    None,
    /// <summary>Maximise ‖Σ_S g_i‖ / √|S|: the subset's summed step over its size under independent noise.</summary>
    GradientNorm,
    /// <summary>Minimise tr Cov_S / (|S|·‖mean_S‖²): the noise-to-signal ratio of the subset's mean step.</summary>
    VarianceNorm,
    /// <summary>Ours, not the paper's: minimise tr Cov_S / |S|, the variance of the subset's mean step, unnormalised.</summary>
    Variance,
    /// <summary>Ours, not the paper's: maximise ‖Σ_S g_i‖, the subset's summed step (drops only samples opposing the rest).</summary>
    GradientSum,
}

/// <summary>Which per-sample gradients the selection reads.</summary>
public enum AdaptationScope
{
    /// <summary>DBA: every layer's per-sample gradients, one subset per layer (one backward per sample).</summary>
    Full,
    /// <summary>EDBA: the last layer's only (one batched outer product); its subset then trains the whole model.</summary>
    LastLayer,
}

/// <summary>
/// Dynamic Batch Adaptation (Simionescu, Stoica, Herscovici, "Dynamic Batch Adaptation", arXiv:2208.00815, 2022)
/// and its efficient variant EDBA (Simionescu and Stoica, AAAI 2023 student abstract), as trainer options. Each step
/// the trainer takes the first <see cref="BatchAdaptationState.CurrentBatch"/> samples of the loader's batch (whose
/// size is <see cref="MaxBatch"/>), scores subsets of their per-sample gradients by <see cref="Strategy"/>, and
/// steps on the chosen subset's mean gradient. Every step the median selected size of the last
/// <see cref="Window"/> steps (all layers) moves the batch size: above <see cref="GrowAbove"/>·current it grows by
/// <see cref="Delta"/>, below <see cref="ShrinkBelow"/>·current it shrinks by <see cref="Delta"/>, clamped to
/// [<see cref="MinBatch"/>, <see cref="MaxBatch"/>].
/// </summary>
public sealed record BatchAdaptationOptions
{
    public AdaptationStrategy Strategy { get; init; } = AdaptationStrategy.GradientNorm;
    public AdaptationScope Scope { get; init; } = AdaptationScope.Full;
    /// <summary>0: greedy backward elimination from the whole batch; N &gt; 0: N random subsets (and the whole batch), the best kept.</summary>
    public int Candidates { get; init; }
    public double GrowAbove { get; init; } = 0.8;
    public double ShrinkBelow { get; init; } = 0.2;
    public int Delta { get; init; } = 8;
    public int MinBatch { get; init; } = 8;
    public int MaxBatch { get; init; } = 64;
    /// <summary>The batch size of the first step; 0 starts at <see cref="MaxBatch"/>.</summary>
    public int InitialBatch { get; init; }
    /// <summary>Steps whose selected sizes the rule's median reads.</summary>
    public int Window { get; init; } = 1;
    /// <summary>Ours, not the paper's: the selection keeps at least this fraction of the batch (rounded up); 0 = no floor.</summary>
    public double MinSelected { get; init; }

    public bool Enabled => Strategy != AdaptationStrategy.None;

    public int StartBatch => InitialBatch > 0 ? InitialBatch : MaxBatch;

    /// <summary>Checks every key; the error names it as the run config spells it.</summary>
    public void Validate(string where = "batch_adaptation")
    {
        void Require(bool ok, string key, string what)
        {
            if (!ok) throw new ArgumentException($"{where}.{key}: {what}");
        }
        Require(Enum.IsDefined(Strategy), "strategy", $"{Strategy} is not one of {StrategyNames}");
        Require(Enum.IsDefined(Scope), "scope", $"{Scope} is not one of full, last_layer");
        Require(Candidates >= 0, "candidates", $"{Candidates} must not be negative (0 = greedy)");
        Require(GrowAbove is > 0 and <= 1, "grow_above", $"{GrowAbove} must be in (0, 1]");
        Require(ShrinkBelow is >= 0 and < 1, "shrink_below", $"{ShrinkBelow} must be in [0, 1)");
        Require(ShrinkBelow < GrowAbove, "shrink_below", $"{ShrinkBelow} must be below grow_above {GrowAbove}");
        Require(Delta >= 1, "delta", $"{Delta} must be at least 1");
        Require(MinBatch >= MinimumSubset(Strategy), "min_batch", $"{MinBatch} must be at least {MinimumSubset(Strategy)} for {Name(Strategy)}");
        Require(MaxBatch >= MinBatch, "max_batch", $"{MaxBatch} must be at least min_batch {MinBatch}");
        Require(InitialBatch == 0 || (InitialBatch >= MinBatch && InitialBatch <= MaxBatch), "initial_batch",
            $"{InitialBatch} must be 0 or in [min_batch {MinBatch}, max_batch {MaxBatch}]");
        Require(Window >= 1, "window", $"{Window} must be at least 1");
        Require(MinSelected is >= 0 and <= 1, "min_selected", $"{MinSelected} must be in [0, 1]");
    }

    /// <summary>The smallest subset a strategy can score: a variance needs two samples.</summary>
    public static int MinimumSubset(AdaptationStrategy strategy) => strategy is AdaptationStrategy.VarianceNorm or AdaptationStrategy.Variance ? 2 : 1;

    const string StrategyNames = "none, gradient_norm, variance_norm, variance, gradient_sum";

    public static string Name(AdaptationStrategy strategy) => strategy switch
    {
        AdaptationStrategy.GradientNorm => "gradient_norm",
        AdaptationStrategy.VarianceNorm => "variance_norm",
        AdaptationStrategy.Variance => "variance",
        AdaptationStrategy.GradientSum => "gradient_sum",
        _ => "none",
    };

    public static AdaptationStrategy ParseStrategy(string text, string key) => text switch
    {
        "none" => AdaptationStrategy.None,
        "gradient_norm" => AdaptationStrategy.GradientNorm,
        "variance_norm" => AdaptationStrategy.VarianceNorm,
        "variance" => AdaptationStrategy.Variance,
        "gradient_sum" => AdaptationStrategy.GradientSum,
        _ => throw new ArgumentException($"{key}: '{text}' must be one of {StrategyNames}"),
    };

    /// <summary>The smallest subset the selection may keep of a batch of <paramref name="batch"/>.</summary>
    public int SelectionFloor(int batch) => SelectionFloor(batch, Strategy, MinSelected);

    public static int SelectionFloor(int batch, AdaptationStrategy strategy, double minSelected) =>
        Math.Min(batch, Math.Max(MinimumSubset(strategy), (int)Math.Ceiling(minSelected * batch - 1e-9)));

    public static AdaptationScope ParseScope(string text, string key) => text switch
    {
        "full" => AdaptationScope.Full,
        "last_layer" => AdaptationScope.LastLayer,
        _ => throw new ArgumentException($"{key}: '{text}' must be full (DBA) or last_layer (EDBA)"),
    };
}

/// <summary>What a checkpoint keeps of the batch adaptation (trainer.json's <c>batch_adaptation</c>).</summary>
public sealed class BatchAdaptationState
{
    public int CurrentBatch { get; set; }
    /// <summary>The selected sizes of the last steps (each step's per-layer sizes), oldest first.</summary>
    public List<int[]> Recent { get; set; } = [];
}

/// <summary>
/// The selection and the batch-size rule of DBA/EDBA. Everything is computed from the Gram matrix K = G Gᵀ of the
/// per-sample gradients G [B,P] of one layer: ‖Σ_S g‖² = Σ_{i,j∈S} K_ij and Σ_S ‖g_i‖² = Σ_{i∈S} K_ii, so a
/// subset costs O(|S|²) to score whatever the layer's size, and the greedy search O(B²) per removal.
/// </summary>
public sealed class BatchAdaptation(BatchAdaptationOptions options)
{
    public BatchAdaptationOptions Options { get; } = options;

    public BatchAdaptationState State { get; private set; } = new() { CurrentBatch = options.StartBatch };

    public int CurrentBatch => State.CurrentBatch;

    public void Restore(BatchAdaptationState state)
    {
        if (state.CurrentBatch < Options.MinBatch || state.CurrentBatch > Options.MaxBatch)
            throw new ArgumentException($"--resume: the checkpoint's batch size {state.CurrentBatch} is outside this run's [min_batch " +
                $"{Options.MinBatch}, max_batch {Options.MaxBatch}]");
        State = new BatchAdaptationState { CurrentBatch = state.CurrentBatch, Recent = [.. state.Recent.TakeLast(Options.Window).Select(s => s.ToArray())] };
    }

    /// <summary>A copy for trainer.json.</summary>
    public BatchAdaptationState Snapshot() => new() { CurrentBatch = State.CurrentBatch, Recent = [.. State.Recent.Select(s => s.ToArray())] };

    /// <summary>
    /// Records one step's selected sizes (one per layer) and applies the rule: returns the batch size for the next
    /// step. A change clears the window, so the new size is judged on its own selections.
    /// </summary>
    public int Update(IReadOnlyList<int> selectedSizes)
    {
        if (selectedSizes.Count == 0) throw new ArgumentException("no selected sizes for the batch-size rule");
        State.Recent.Add([.. selectedSizes]);
        while (State.Recent.Count > Options.Window) State.Recent.RemoveAt(0);
        int next = NextBatchSize(State.CurrentBatch, Median(State.Recent.SelectMany(s => s)), Options);
        if (next != State.CurrentBatch)
        {
            State.CurrentBatch = next;
            State.Recent.Clear();
        }
        return next;
    }

    /// <summary>The rule: grow by delta above grow_above·current, shrink by delta below shrink_below·current, clamp.</summary>
    public static int NextBatchSize(int current, double medianSelected, BatchAdaptationOptions options)
    {
        int next = current;
        if (medianSelected > options.GrowAbove * current) next = current + options.Delta;
        else if (medianSelected < options.ShrinkBelow * current) next = current - options.Delta;
        return Math.Clamp(next, options.MinBatch, options.MaxBatch);
    }

    public static double Median(IEnumerable<int> values)
    {
        var sorted = values.Order().ToArray();
        if (sorted.Length == 0) throw new ArgumentException("the median of no values");
        int mid = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2.0;
    }

    /// <summary>
    /// EDBA's per-sample gradients of a Linear layer y = x Wᵀ + b from its input x [B,…,in] and the gradient of the
    /// per-sample losses' sum to its output, dy [B,…,out]: sample i's weight gradient is Σ_t dy_it x_itᵀ [out,in]
    /// (the outer product, summed over tokens when the layer runs per token) and its bias gradient Σ_t dy_it. One
    /// batched matmul for all samples; fp32.
    /// </summary>
    public static (Tensor Weight, Tensor Bias) LinearGradients(Tensor input, Tensor outputGrad)
    {
        if (input.dim() < 2 || outputGrad.dim() != input.dim() || !input.shape[..^1].SequenceEqual(outputGrad.shape[..^1]))
            throw new ArgumentException($"{nameof(LinearGradients)}: input [{string.Join(",", input.shape)}] and output gradient " +
                $"[{string.Join(",", outputGrad.shape)}] must agree but in their last axis");
        using var scope = NewDisposeScope();
        long b = input.shape[0];
        var x = input.to(ScalarType.Float32).reshape(b, -1, input.shape[^1]);                           // [B,T,in]
        var dy = outputGrad.to(ScalarType.Float32).reshape(b, -1, outputGrad.shape[^1]);                // [B,T,out]
        var weight = Runtime.Checked.matmul(dy.transpose(1, 2), x);                                     // [B,out,in]
        return (scope.MoveToOuter(weight), scope.MoveToOuter(dy.sum([1])));
    }

    /// <summary>The Gram matrix [B,B] (fp64, CPU) of per-sample gradients given as [B,…] tensors of one layer.</summary>
    public static double[,] Gram(IEnumerable<Tensor> perSample)
    {
        using var scope = NewDisposeScope();
        Tensor? sum = null;
        foreach (var g in perSample)
        {
            var flat = g.detach().to(ScalarType.Float64).reshape(g.shape[0], -1);
            var k = flat.mm(flat.t());
            sum = sum is null ? k : sum + k;
        }
        if (sum is null) throw new ArgumentException("no per-sample gradients to select from");
        return ToMatrix(sum);
    }

    /// <summary>
    /// The Gram matrix [B,B] (fp64) of a Linear layer's per-sample gradients (weight and bias together) from the
    /// same input and output gradient as <see cref="LinearGradients"/>, without forming them: ⟨dy_i x_iᵀ, dy_j x_jᵀ⟩
    /// = (dy_i·dy_j)(x_i·x_j), so K = (DY DYᵀ) ⊙ (X Xᵀ + 1) for one token per sample; with T tokens the products
    /// run over token pairs. O(B²T²(in + out)) instead of O(B²·in·out): what makes full-scope DBA cheap for an MLP.
    /// </summary>
    public static Tensor LinearGram(Tensor input, Tensor outputGrad)
    {
        if (input.dim() < 2 || outputGrad.dim() != input.dim() || !input.shape[..^1].SequenceEqual(outputGrad.shape[..^1]))
            throw new ArgumentException($"{nameof(LinearGram)}: input [{string.Join(",", input.shape)}] and output gradient " +
                $"[{string.Join(",", outputGrad.shape)}] must agree but in their last axis");
        using var scope = NewDisposeScope();
        long b = input.shape[0];
        var x = input.detach().to(ScalarType.Float64).reshape(b, -1, input.shape[^1]);                 // [B,T,in]
        var dy = outputGrad.detach().to(ScalarType.Float64).reshape(b, -1, outputGrad.shape[^1]);      // [B,T,out]
        long t = x.shape[1];
        var xx = Runtime.Checked.matmul(x.reshape(b * t, -1), x.reshape(b * t, -1).t()) + 1;           // [BT,BT]; +1: the bias
        var dd = Runtime.Checked.matmul(dy.reshape(b * t, -1), dy.reshape(b * t, -1).t());
        var gram = (xx * dd).reshape(b, t, b, t).sum([1, 3]);
        return scope.MoveToOuter(gram);
    }

    /// <summary>A [B,B] tensor as a matrix (fp64).</summary>
    public static double[,] ToMatrix(Tensor gram)
    {
        if (gram.dim() != 2 || gram.shape[0] != gram.shape[1])
            throw new ArgumentException($"a Gram matrix must be square, not [{string.Join(",", gram.shape)}]");
        using var scope = NewDisposeScope();
        int b = (int)gram.shape[0];
        var values = gram.detach().to(ScalarType.Float64).cpu().contiguous().data<double>().ToArray();
        var matrix = new double[b, b];
        for (int i = 0; i < b; i++)
            for (int j = 0; j < b; j++) matrix[i, j] = values[i * b + j];
        return matrix;
    }

    /// <summary>
    /// The chosen subset's sample indices, ascending. <paramref name="random"/> gives the candidates' draws when
    /// <see cref="BatchAdaptationOptions.Candidates"/> is positive.
    /// </summary>
    public int[] Select(double[,] gram, Generator? random = null) => Select(gram, Options.Strategy, Options.Candidates, random, Options.MinSelected);

    /// <summary><paramref name="minSelected"/>: the fraction of the batch the subset keeps at least (ours; 0 = the paper's).</summary>
    public static int[] Select(double[,] gram, AdaptationStrategy strategy, int candidates, Generator? random = null, double minSelected = 0)
    {
        int b = gram.GetLength(0);
        if (gram.GetLength(1) != b) throw new ArgumentException($"the Gram matrix is {b}×{gram.GetLength(1)}, not square");
        int minimum = BatchAdaptationOptions.SelectionFloor(b, strategy, minSelected);
        var all = Enumerable.Range(0, b).ToArray();
        if (strategy == AdaptationStrategy.None || b <= minimum) return all;
        return candidates == 0 ? Greedy(gram, strategy, minimum) : Sampled(gram, strategy, candidates, minimum, random);
    }

    /// <summary>
    /// A subset's score, higher is better: ‖Σg‖/√n (gradient_norm), −tr Cov/(n‖mean‖²) (variance_norm), and our
    /// variants −tr Cov/n (variance) and ‖Σg‖ (gradient_sum).
    /// </summary>
    public static double Score(double[,] gram, IReadOnlyCollection<int> subset, AdaptationStrategy strategy)
    {
        double sumSq = 0, trace = 0;
        foreach (int i in subset)
        {
            trace += gram[i, i];
            foreach (int j in subset) sumSq += gram[i, j];
        }
        return Score(sumSq, trace, subset.Count, strategy);
    }

    static double Score(double sumSq, double trace, int n, AdaptationStrategy strategy)
    {
        sumSq = Math.Max(sumSq, 0);  // rounding can take a sum of squares of near-cancelling gradients below 0
        if (strategy == AdaptationStrategy.GradientNorm) return Math.Sqrt(sumSq / n);
        if (strategy == AdaptationStrategy.GradientSum) return Math.Sqrt(sumSq);
        if (n < 2) return double.NegativeInfinity;
        // tr Cov/n = (n·tr − ‖Σg‖²) / (n²(n−1)).
        if (strategy == AdaptationStrategy.Variance) return -Math.Max(n * trace - sumSq, 0) / ((double)n * n * (n - 1));
        // tr Cov = (Σ‖g‖² − ‖Σg‖²/n)/(n−1), ‖mean‖² = ‖Σg‖²/n²  ⇒  ratio = (n·tr − ‖Σg‖²) / ((n−1)·‖Σg‖²).
        if (n < 2 || sumSq <= 0) return double.NegativeInfinity;
        return -Math.Max(n * trace - sumSq, 0) / ((n - 1) * sumSq);
    }

    /// <summary>Backward elimination: from the whole batch, drop the sample whose removal most improves the score, while one does.</summary>
    static int[] Greedy(double[,] gram, AdaptationStrategy strategy, int minimum)
    {
        int b = gram.GetLength(0);
        var inSet = Enumerable.Repeat(true, b).ToArray();
        var rowSum = new double[b];  // Σ_{j∈S} K_ij
        double sumSq = 0, trace = 0;
        for (int i = 0; i < b; i++)
        {
            for (int j = 0; j < b; j++) rowSum[i] += gram[i, j];
            sumSq += rowSum[i];
            trace += gram[i, i];
        }
        int n = b;
        double current = Score(sumSq, trace, n, strategy);
        while (n > minimum)
        {
            int best = -1;
            double bestScore = current;
            for (int i = 0; i < b; i++)
            {
                if (!inSet[i]) continue;
                double s = Score(sumSq - 2 * rowSum[i] + gram[i, i], trace - gram[i, i], n - 1, strategy);
                if (Better(s, bestScore)) (best, bestScore) = (i, s);
            }
            if (best < 0) break;
            inSet[best] = false;
            sumSq = sumSq - 2 * rowSum[best] + gram[best, best];
            trace -= gram[best, best];
            for (int i = 0; i < b; i++) rowSum[i] -= gram[i, best];
            n--;
            current = bestScore;
        }
        return [.. Enumerable.Range(0, b).Where(i => inSet[i])];
    }

    // Strictly better by more than rounding, so ties keep the larger subset (and the greedy search stops).
    static bool Better(double score, double than) =>
        double.IsNegativeInfinity(than) ? score > than : score > than + 1e-12 * Math.Abs(than);

    /// <summary>EDBA's random search: <paramref name="candidates"/> subsets of uniform size in [minimum, B], uniform members; the whole batch competes
    /// too.</summary>
    static int[] Sampled(double[,] gram, AdaptationStrategy strategy, int candidates, int minimum, Generator? random)
    {
        int b = gram.GetLength(0);
        int[] best = [.. Enumerable.Range(0, b)];
        double bestScore = Score(gram, best, strategy);
        using var scope = NewDisposeScope();
        var draws = rand([candidates, b + 1], dtype: ScalarType.Float64, generator: random);
        var sizes = draws[.., 0].cpu().data<double>().ToArray();
        var order = draws[.., 1..].argsort(1).cpu().contiguous().data<long>().ToArray();
        for (int c = 0; c < candidates; c++)
        {
            int size = Math.Min(b, minimum + (int)(sizes[c] * (b - minimum + 1)));
            var subset = new int[size];
            for (int k = 0; k < size; k++) subset[k] = (int)order[c * b + k];
            double s = Score(gram, subset, strategy);
            if (Better(s, bestScore)) (best, bestScore) = (subset, s);
        }
        Array.Sort(best);
        return best;
    }
}
