using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// The weights of the best validation check so far, by one metric (Lightning's ModelCheckpoint(monitor, mode), kept
/// in memory on the CPU): <see cref="FineTuneOptions.SelectBest"/> and <see cref="FineTuneOptions.SelectMode"/>.
/// Without a metric it keeps nothing.
/// </summary>
internal sealed class BestWeights(string? metric, string mode) : IDisposable
{
    readonly double sign = mode == "min" ? -1 : 1;
    double bestValue = double.NegativeInfinity;
    Dictionary<string, Tensor>? weights;

    /// <summary>The step of the weights kept; null before the first check that improved the metric.</summary>
    public long? Step { get; private set; }

    public bool HasWeights => weights is not null;

    /// <summary>Keeps a copy of <paramref name="module"/>'s weights where <paramref name="scores"/> beat the best so far.</summary>
    public void Offer(long step, IReadOnlyDictionary<string, double> scores, nn.Module module, string headName)
    {
        if (metric is null) return;
        if (!scores.TryGetValue(metric, out double value))
            throw new ArgumentException($"select_best '{metric}': the {headName}'s metric gives {string.Join(", ", scores.Keys)}");
        if (!(sign * value > bestValue)) return;
        (bestValue, Step) = (sign * value, step);
        Release();
        weights = module.state_dict().ToDictionary(p => p.Key, p => p.Value.detach().cpu().clone());
    }

    /// <summary>Copies the weights kept into <paramref name="module"/>; false when none were kept.</summary>
    public bool CopyTo(nn.Module module)
    {
        if (weights is null) return false;
        using (torch.no_grad())
        {
            var state = module.state_dict();
            foreach (var (name, value) in weights) state[name].copy_(value);
        }
        return true;
    }

    void Release()
    {
        if (weights is null) return;
        foreach (var t in weights.Values) t.Dispose();
        weights = null;
    }

    public void Dispose() => Release();
}
