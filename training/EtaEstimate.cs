namespace Medformer.Training;

/// <summary>
/// The time left, from the mean step time since the first log line of this process rather than the last window: one
/// slow window (a checkpoint, another job on the machine, an evaluation) moves it a little instead of doubling it.
/// The first window, which holds the warm-up (allocations, the loader's first batches), is left out once a second
/// one exists.
/// </summary>
public sealed class EtaEstimate
{
    long firstStep = -1;
    TimeSpan firstAt;

    /// <param name="step">The step just logged.</param>
    /// <param name="elapsed">Time since this process's training began.</param>
    /// <param name="windowSecondsPerStep">The last window's mean step time, used until a second window exists.</param>
    public TimeSpan Remaining(long step, long maxSteps, TimeSpan elapsed, double windowSecondsPerStep)
    {
        if (firstStep < 0)
        {
            (firstStep, firstAt) = (step, elapsed);
            return Left(maxSteps - step, windowSecondsPerStep);
        }
        double perStep = step > firstStep ? (elapsed - firstAt).TotalSeconds / (step - firstStep) : windowSecondsPerStep;
        return Left(maxSteps - step, perStep);
    }

    static TimeSpan Left(long steps, double secondsPerStep) =>
        double.IsFinite(secondsPerStep) && secondsPerStep > 0 && steps > 0 ? TimeSpan.FromSeconds(steps * secondsPerStep) : TimeSpan.Zero;
}
