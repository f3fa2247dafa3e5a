using Medformer.Runtime;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Distributed;

/// <summary>The data-parallel trainer against one process on the same global batches.</summary>
public sealed class DataParallelTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dp-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    [Fact]
    public void TwoProcessesOfBatchBEndWithTheWeightsOfOneProcessOfBatch2B()
    {
        const int steps = 6;
        string one = Path.Combine(root, "one"), two = Path.Combine(root, "two");
        var single = Ranks.StartWorkers(null, "train", one, steps.ToString());
        var results = Ranks.Wait(single).Concat(Ranks.Wait(Ranks.StartWorkers(2, "train", two, steps.ToString()))).ToArray();
        foreach (var (code, stdout, stderr) in results)
        {
            output.WriteLine(stdout + stderr);
            Assert.True(code == 0, stderr);
        }
        // Both ranks log the same global loss as the single process, step by step.
        string Losses(string stdout) => string.Join("\n", stdout.Split('\n').Where(l => l.StartsWith("step ", StringComparison.Ordinal)));
        Assert.Equal(Losses(results[1].Stdout), Losses(results[2].Stdout));
        var expected = Losses(results[0].Stdout).Split('\n').Select(l => double.Parse(l.Split(' ')[^1])).ToArray();
        var actual = Losses(results[1].Stdout).Split('\n').Select(l => double.Parse(l.Split(' ')[^1])).ToArray();
        Assert.Equal(steps, actual.Length);
        for (int i = 0; i < steps; i++) Assert.True(Math.Abs(expected[i] - actual[i]) < 1e-5 * Math.Abs(expected[i]) + 1e-6,
            $"step {i + 1}: loss {actual[i]} against {expected[i]}");

        string checkpoint = $"checkpoint-{steps:D6}";
        foreach (string file in new[] { Path.Combine("model", "model.safetensors"), Path.Combine(checkpoint, "heads.safetensors"), Path.Combine(checkpoint,
            "ema.safetensors") })
        {
            var a = Safetensors.Load(Path.Combine(one, file));
            var b = Safetensors.Load(Path.Combine(two, file));
            Assert.Equal(a.Keys.Order(), b.Keys.Order());
            double worst = 0;
            string where = "";
            foreach (var (name, value) in a)
            {
                double difference = (value - b[name]).abs().max().item<float>();
                // A bias whose effect a batch standardisation downstream removes (BatchNorm, Barlow Twins') has a
                // gradient of zero up to rounding, which AdamW turns into steps of about lr whichever way it falls:
                // those may differ by up to lr per step, not more.
                if (Invariant(name))
                {
                    Assert.True(difference < 2 * 1e-3 * steps, $"{name} differs by {difference:G3}");
                    continue;
                }
                if (difference > worst) (worst, where) = (difference, name);
            }
            output.WriteLine($"{file}: largest difference {worst:G3} ({where})");
            Assert.True(worst < 1e-4, $"{file}: {where} differs by {worst:G3}");
            foreach (var t in a.Values.Concat(b.Values)) t.Dispose();
        }
        // The checkpoint and the model come from rank 0 alone.
        Assert.Single(Directory.GetDirectories(two, "checkpoint-*"));
    }

    static bool Invariant(string name) =>
        System.Text.RegularExpressions.Regex.IsMatch(name, @"(pool\.norm\.bias|(projector|predictor)\.layers\.0\.bias|barlow\.projector\.layers\.\d+\.bias)$");
}
