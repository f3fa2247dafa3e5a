using System.Text.Json.Nodes;
using Medformer.Datasets.Formats;
using Medformer.Heads;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// The intensity range a model was fine-tuned on, kept in head.json, and predict's one-line warning for inputs far
/// from it (CT in Hounsfield units into a model trained on [0, 1]).
/// </summary>
public sealed class PredictIntensityTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-predict-range-");

    public void Dispose() => scratch.Dispose();

    [Theory]
    [InlineData(0, 1, -1024, 3071, "far outside")]
    [InlineData(0, 1, 0, 255, "far outside")]
    [InlineData(0, 1, -1.5, 0.5, "far outside")]
    [InlineData(-1024, 3071, 0, 1, "within a hundredth of")]
    [InlineData(0, 1, 0.2, 0.8, null)]
    [InlineData(0, 1, -0.9, 1.9, null)]
    [InlineData(-1024, 3071, 0, 0, null)]
    public void FarIsBeyondTheWidthOrWithinAHundredthOfIt(double min, double max, double low, double high, string? expected)
    {
        using var images = tensor(new[] { (float)low, (float)high }).reshape(1, 1, 1, 2);
        string? warning = new InputRange(min, max).Mismatch("x.npz", images);
        if (expected is null) Assert.Null(warning);
        else Assert.StartsWith($"x.npz: intensities {low:G4} to {high:G4}, {expected} the range the model was trained on ({min:G4} to {max:G4})", warning);
    }

    [Fact]
    public void PredictWarnsOnceOnStderrForAnInputInHounsfieldUnits()
    {
        string tuned = Path.Combine(scratch.Root, "tuned");
        var finetune = scratch.Run("finetune", "--checkpoint", scratch.PretrainedFolder(), "--task", "phantom:2d", "--fraction", "0.05", "--max-steps", "2",
            "--batch-size", "4", "--precision", "fp32", "--no-augment", "--out", tuned, "--tracking-uri", "none");
        Assert.True(finetune.ExitCode == 0, finetune.Stderr);
        string model = Path.Combine(tuned, "model");
        var range = JsonNode.Parse(File.ReadAllText(Path.Combine(model, "head.json")))!["input_range"]!;
        Assert.Equal(0, range["min"]!.GetValue<double>());
        Assert.InRange(range["max"]!.GetValue<double>(), 0.5, 1);   // the phantom is uint8 / 255

        string hounsfield = Path.Combine(scratch.Root, "ct.npz"), unit = Path.Combine(scratch.Root, "unit.npz");
        using (var ct = rand(2, 28, 28) * 4095 - 1024) Npz.Write(hounsfield, new Dictionary<string, Tensor> { ["images"] = ct });
        using (var bytes = randint(0, 256, [2, 28, 28]).to(ScalarType.Byte)) Npz.Write(unit, new Dictionary<string, Tensor> { ["images"] = bytes });
        var far = scratch.Run("predict", "--checkpoint", model, hounsfield, unit, "--out", Path.Combine(scratch.Root, "p"));
        Assert.True(far.ExitCode == 0, far.Stderr);
        string line = Assert.Single(far.Stderr.Trim().Split('\n'));
        Assert.StartsWith($"medformer predict: warning: {hounsfield}: intensities -10", line);
        Assert.Contains("far outside the range the model was trained on (0 to ", line);
        Assert.True(File.Exists(Path.Combine(scratch.Root, "p", "predictions.csv")));
    }
}
