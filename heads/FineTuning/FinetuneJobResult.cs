namespace Medformer.Heads.FineTuning;

/// <summary>
/// What a fine-tuning job leaves: the last fine-tuning's result (its model folder, trainer record and validation
/// scores), the test scores of the model it ends with, the training samples used, and with self-training or
/// FixMatch the images without labels and (self-training) each round's pseudo-labels.
/// </summary>
public sealed record FinetuneJobResult(FineTuneResult FineTuning, IReadOnlyDictionary<string, double> Test, long TrainSamples,
    long? Unlabelled = null, IReadOnlyList<PseudoLabelRound>? Rounds = null);
