using Medformer.Runtime;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// A fine-tuning job checked before anything is written: its options, the pretrained model's folder (a hub name
/// resolved), the head spec it runs (the task's default where none was given) and the precision that will run on
/// this machine (bf16 falls back to fp32 on a CPU without fast bf16). A resumed job names the checkpoint it goes on
/// from and the tracking run that checkpoint's training reported to (its trainer.json), which it continues.
/// </summary>
public sealed record FinetunePlan(FinetuneJobOptions Options, string ModelFolder, string Head, Precision Precision, string? ResumeFrom = null,
    string? ResumeRunId = null);
