using Medformer.Training;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// What fine-tuning left: the model folder (null when no output folder was given), the trainer's record (its
/// Evaluations: the validation scores at each check), the validation scores of the weights kept, and with
/// <see cref="FineTuneOptions.SelectBest"/> the step whose weights were kept.
/// </summary>
public sealed record FineTuneResult(string? ModelDirectory, TrainerResult Training, IReadOnlyDictionary<string, double>? Validation, long? SelectedStep = null);
