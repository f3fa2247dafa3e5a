namespace Medformer.Training;

/// <summary>
/// A run stopped by its cancellation token (Ctrl-C, SIGTERM) at a step boundary, after writing the checkpoint of that
/// step, so <c>--resume</c> continues from exactly there.
/// </summary>
public sealed class TrainingInterruptedException(long step, string checkpoint, CancellationToken token)
    : OperationCanceledException($"interrupted after step {step}; checkpoint {checkpoint}", token)
{
    public long Step { get; } = step;
    public string Checkpoint { get; } = checkpoint;
}
