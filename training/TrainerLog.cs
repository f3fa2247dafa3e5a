namespace Medformer.Training;

/// <summary>
/// One line of the training log. With batch adaptation, <see cref="BatchSize"/> is the mean batch size of the steps
/// since the last line and <see cref="SelectedSize"/> the mean of their median selected sizes; null otherwise.
/// Data parallel: the loss and its parts are the means over ranks, <see cref="SamplesPerSecond"/> counts every
/// rank's samples, and <see cref="Communication"/> is the fraction of the time since the last line spent in
/// collectives (null in one process).
/// </summary>
public sealed record TrainerLog(long Step, long MaxSteps, double Loss, IReadOnlyDictionary<string, double> Parts, double LearningRate,
    double GradNorm, double SamplesPerSecond, TimeSpan Elapsed, TimeSpan Remaining, long SkippedSteps,
    double? BatchSize = null, double? SelectedSize = null, double? Communication = null);
