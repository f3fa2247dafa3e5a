using static TorchSharp.torch;

namespace Medformer.Datasets.Transforms;

/// <summary>
/// Z-score normalisation (MONAI's <c>NormalizeIntensity</c>): (x − mean) / std over the whole image or per channel,
/// with the population std; a zero std divides by 1. With <paramref name="Nonzero"/>, statistics come from the
/// nonzero voxels and only they change (zero background stays 0). <paramref name="Subtrahend"/> and
/// <paramref name="Divisor"/> (one value, or one per channel) replace the computed mean and std. Touches the image only.
/// </summary>
public sealed record NormalizeIntensity(double[]? Subtrahend = null, double[]? Divisor = null, bool Nonzero = false, bool ChannelWise = false) : ITransform
{
    public Sample Apply(Sample sample, Random rng)
    {
        Spatial.Axes(sample, nameof(NormalizeIntensity));
        using var scope = NewDisposeScope();
        long channels = sample.Image.size(0);
        long rowsCount = ChannelWise ? channels : 1;
        var x = sample.Image.reshape(rowsCount, -1);
        Tensor? mask = Nonzero ? x.ne(0).to(ScalarType.Float32) : null;
        var count = mask is null ? null : mask.sum([1], keepdim: true).clamp_min(1);
        Tensor mean = Subtrahend is not null ? Fixed(Subtrahend, nameof(Subtrahend), rowsCount, channels)
            : mask is null ? x.mean([1], keepdim: true) : (x * mask).sum([1], keepdim: true) / count!;
        Tensor std;
        if (Divisor is null)
        {
            var centred = mask is null ? x - mean : (x - mean) * mask;
            std = mask is null ? centred.square().mean([1], keepdim: true).sqrt() : centred.square().sum([1], keepdim: true).div(count!).sqrt();
            std = where(std > 0, std, ones_like(std));
        }
        else std = Fixed(Divisor, nameof(Divisor), rowsCount, channels);
        var normalised = (x - mean) / std;
        var result = mask is null ? normalised : where(mask > 0, normalised, x);
        return Spatial.Keep(scope, Intensity.WithImage(sample, result.view(Spatial.Shape(sample.Image))));
    }

    static Tensor Fixed(double[] values, string name, long rows, long channels)
    {
        if (values.Length != 1 && values.Length != rows)
            throw new ArgumentException($"NormalizeIntensity: {name} needs 1 " +
                $"value{(rows > 1 ? $" or one per channel ({channels})" : "")}, got {values.Length}");
        if (name == nameof(Divisor) && values.Any(v => v == 0))
            throw new ArgumentException("NormalizeIntensity: Divisor must not be 0");
        var column = values.Length == rows ? values : Enumerable.Repeat(values[0], (int)rows).ToArray();
        return Spatial.Floats(column.Select(v => (float)v).ToArray(), rows, 1);
    }
}
