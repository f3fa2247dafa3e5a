using System.Diagnostics;

namespace Medformer.Training;

/// <summary>
/// What the trainer sums between two log lines (the means of the steps that were taken, the samples of every
/// micro-batch, batch adaptation's sizes, the time in collectives) and the line it makes of them.
/// </summary>
internal sealed class LogWindow(long start, TimeSpan communication)
{
    readonly Stopwatch watch = Stopwatch.StartNew();
    readonly Dictionary<string, double> partSums = [];
    double lossSum, normSum, batchSum, selectedSum;
    int steps, adaptedSteps;
    long samples;

    public void AddSamples(long count) => samples += count;

    public void AddAdapted(int batchSize, double medianSelected)
    {
        batchSum += batchSize;
        selectedSum += medianSelected;
        adaptedSteps++;
    }

    /// <summary>A step that was taken (skipped steps count towards samples only).</summary>
    public void AddStep(double loss, double norm, IReadOnlyDictionary<string, double> parts)
    {
        lossSum += loss;
        normSum += norm;
        foreach (var (name, value) in parts) partSums[name] = partSums.GetValueOrDefault(name) + value;
        steps++;
    }

    /// <summary>The log line at <paramref name="step"/>; the window starts again after it.</summary>
    /// <param name="communicationNow">The process group's total time in collectives; null in one process.</param>
    public TrainerLog Close(long step, long maxSteps, double lr, TimeSpan elapsed, Func<double, TimeSpan> remaining, long skipped, TimeSpan? communicationNow)
    {
        double seconds = watch.Elapsed.TotalSeconds;
        double rate = seconds > 0 ? samples / seconds : 0;
        double stepsPerSecond = seconds > 0 ? (step - start) / seconds : 0;
        var entry = new TrainerLog(step, maxSteps, steps > 0 ? lossSum / steps : double.NaN,
            partSums.ToDictionary(p => p.Key, p => p.Value / Math.Max(1, steps)), lr, steps > 0 ? normSum / steps : double.NaN, rate, elapsed,
            remaining(stepsPerSecond > 0 ? 1 / stepsPerSecond : double.NaN), skipped,
            adaptedSteps > 0 ? batchSum / adaptedSteps : null, adaptedSteps > 0 ? selectedSum / adaptedSteps : null,
            communicationNow is not { } now || seconds <= 0 ? null : (now - communication).TotalSeconds / seconds);
        (lossSum, normSum, batchSum, selectedSum, steps, adaptedSteps, samples, start) = (0, 0, 0, 0, 0, 0, 0, step);
        communication = communicationNow ?? TimeSpan.Zero;
        partSums.Clear();
        watch.Restart();
        return entry;
    }
}
