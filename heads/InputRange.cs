using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Datasets.Corpora;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// The intensities a model was fine-tuned on: the least and greatest value over a few training images as the corpus
/// gave them (MedMNIST and the phantom: [0, 1]; an MSD task's CT: Hounsfield units). <see cref="FineTuning.FineTuner"/>
/// keeps it in head.json (<c>"input_range": {"min": 0, "max": 1}</c>), and <c>medformer predict</c> warns when an
/// input lies far from it (<see cref="Mismatch"/>).
/// </summary>
public sealed record InputRange(double Min, double Max)
{
    /// <summary>Over <paramref name="samples"/> images spread evenly through <paramref name="corpus"/> (all of a smaller one).</summary>
    public static InputRange Of(ICorpus corpus, int samples = 8)
    {
        if (corpus.Count == 0) throw new ArgumentException($"{corpus.Name}: no images to take an intensity range from");
        long n = Math.Min(corpus.Count, samples);
        double min = double.PositiveInfinity, max = double.NegativeInfinity;
        for (long k = 0; k < n; k++)
        {
            using var sample = corpus.Get(k * corpus.Count / n);
            var (low, high) = Extremes(sample.Image);
            (min, max) = (Math.Min(min, low), Math.Max(max, high));
        }
        return new InputRange(min, max);
    }

    /// <summary>
    /// A one-line warning when <paramref name="images"/> (as predict feeds them to the model) lie far from this range:
    /// beyond it by more than its width on either side (CT in Hounsfield units into a model trained on [0, 1]), or,
    /// where they vary at all, within a hundredth of its width (images scaled to [0, 1] into a model trained on HU);
    /// null where they fit. <paramref name="input"/> names the file.
    /// </summary>
    public string? Mismatch(string input, Tensor images)
    {
        var (low, high) = Extremes(images);
        if (!double.IsFinite(low) || !double.IsFinite(high)) return null;
        double width = Math.Max(Max - Min, 1e-6);
        string Said(double a, double b) => $"{a.ToString("G4", CultureInfo.InvariantCulture)} to {b.ToString("G4", CultureInfo.InvariantCulture)}";
        string how = low < Min - width || high > Max + width ? "far outside"
            : high > low && high - low < width / 100 ? "within a hundredth of"
            : "";
        return how.Length == 0 ? null
            : $"{input}: intensities {Said(low, high)}, {how} the range the model was trained on ({Said(Min, Max)}); its predictions mean little until the " +
                "input is scaled as its training images were";
    }

    public JsonObject ToJson() => new() { ["min"] = Min, ["max"] = Max };

    /// <summary>head.json's "input_range"; null where it is missing (a model folder written before it was kept) or not two numbers.</summary>
    public static InputRange? FromJson(JsonNode? node) =>
        node is JsonObject o && o["min"] is JsonValue min && o["max"] is JsonValue max && min.TryGetValue(out double a) && max.TryGetValue(out double b)
            ? new InputRange(a, b) : null;

    static (double Low, double High) Extremes(Tensor images)
    {
        using var scope = NewDisposeScope();
        var values = images.to(ScalarType.Float64);
        return (values.min().item<double>(), values.max().item<double>());
    }
}
