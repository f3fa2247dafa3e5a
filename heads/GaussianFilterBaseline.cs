using Medformer.Datasets.Corpora;
using Medformer.Datasets.Transforms;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>The mean squared error of the Gaussian filter at each σ tried on the validation pairs, and the best one.</summary>
public sealed record GaussianFilterFit(GaussianFilterBaseline Best, double BestMse, double IdentityMse, IReadOnlyList<(double Sigma, double Mse)> Grid);

/// <summary>
/// The restoration baseline (the first row of the seed talk's table): the noisy input smoothed by a Gaussian of
/// σ pixels on every spatial axis (2D or 3D; separable, cut at 4σ, edges replicated: MONAI's GaussianSmooth), σ
/// chosen on validation pairs by grid search for the lowest mean squared error against the targets. σ = 0 is the
/// identity, so the chosen filter never does worse than the input on the validation pairs.
/// </summary>
public sealed record GaussianFilterBaseline(double Sigma)
{
    /// <summary>σ in pixels: 0 (the input itself) to 4.</summary>
    public static IReadOnlyList<double> DefaultSigmas { get; } = [0, 0.25, 0.5, 0.75, 1, 1.25, 1.5, 2, 2.5, 3, 4];

    /// <summary>An image [C,…] (2D or 3D by its rank, 3 or 4), smoothed; a new tensor.</summary>
    public Tensor Restore(Tensor image)
    {
        if (image.dim() is not (3 or 4))
            throw new ArgumentException($"the Gaussian baseline smooths an image [C,H,W] or a volume [C,D,H,W], not [{string.Join(",", image.shape)}]");
        if (!(Sigma >= 0) || double.IsInfinity(Sigma)) throw new ArgumentException($"σ {Sigma} must be a finite, non-negative number of pixels");
        if (Sigma == 0) return image.to(ScalarType.Float32).clone();
        using var scope = NewDisposeScope();
        var sigmas = Enumerable.Repeat(Sigma, (int)image.dim() - 1).ToArray();
        return scope.MoveToOuter(RandGaussianSmooth.Smooth(image.to(ScalarType.Float32), sigmas, truncated: 4.0));
    }

    /// <summary>
    /// σ by grid search on a corpus of validation pairs (each sample's image, its first target-channels, against its
    /// target on the same grid): the lowest mean squared error over all pixels of all pairs.
    /// </summary>
    public static GaussianFilterFit Fit(ICorpus validation, IReadOnlyList<double>? sigmas = null)
    {
        sigmas ??= DefaultSigmas;
        if (sigmas.Count == 0 || sigmas.Any(s => !(s >= 0) || double.IsInfinity(s)))
            throw new ArgumentException("the σ grid must hold finite, non-negative values");
        if (validation.Count == 0) throw new ArgumentException($"corpus '{validation.Name}' has no validation pairs");
        var sums = new double[sigmas.Count];
        double identity = 0, pixels = 0;
        for (long i = 0; i < validation.Count; i++)
        {
            using var sample = validation.Get(i);
            using var scope = NewDisposeScope();
            var target = sample.Target?.to(ScalarType.Float32)
                ?? throw new ArgumentException($"{sample.Meta}: the Gaussian baseline is fitted on (input, target) pairs, and this sample has no target");
            if (!target.shape[1..].SequenceEqual(sample.Image.shape[1..]) || target.shape[0] > sample.Image.shape[0])
                throw new ArgumentException($"{sample.Meta}: target [{string.Join(",", target.shape)}] is not on the input's grid " +
                    $"[{string.Join(",", sample.Image.shape)}]");
            var input = sample.Image.narrow(0, 0, target.shape[0]);
            for (int s = 0; s < sigmas.Count; s++)
            {
                using var restored = new GaussianFilterBaseline(sigmas[s]).Restore(input);
                sums[s] += (restored - target).square().sum().item<float>();
            }
            identity += (input - target).square().sum().item<float>();
            pixels += target.numel();
        }
        var grid = sigmas.Select((s, k) => (s, sums[k] / pixels)).ToList();
        var best = grid.MinBy(g => g.Item2);
        return new GaussianFilterFit(new GaussianFilterBaseline(best.s), best.Item2, identity / pixels, grid);
    }
}
