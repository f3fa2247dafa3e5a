namespace Medformer.Heads.FineTuning;

/// <summary>
/// Self-training on unlabelled images, the third step of SimCLRv2's "pretrain, fine-tune, distil" (Chen et al.,
/// 2020) with hard labels as in pseudo-labelling (Lee, 2013) and Noisy Student (Xie et al., 2020): the fine-tuned
/// model (the teacher, in eval mode, on clean images) labels the unlabelled images, those whose top probability
/// reaches <see cref="Threshold"/> join the labelled ones, and fine-tuning goes on over both with the training
/// augmentation (the student's noise). The images pretraining saw without labels are used again after it.
/// </summary>
public sealed record SelfTrainingOptions
{
    /// <summary>Pseudo-labels whose top probability is below this are left out (0 keeps them all).</summary>
    public double Threshold { get; init; }
    /// <summary>The share of each batch's samples drawn from the pseudo-labelled images; the rest are labelled ones.</summary>
    public double UnlabelledShare { get; init; } = 0.5;
    /// <summary>Teacher → student rounds; each round's student labels the images again for the next.</summary>
    public int Rounds { get; init; } = 1;
    /// <summary>
    /// The student's augmentation (its noise, stronger than fine-tuning's in Noisy Student); null: the
    /// <see cref="FineTuneOptions.Augment"/> given. The teacher labels clean images either way.
    /// </summary>
    public Datasets.Transforms.ITransform? Augment { get; init; }
    /// <summary>Fine-tuning steps of each round; null: the <see cref="FineTuneOptions.MaxSteps"/> given.</summary>
    public long? Steps { get; init; }

    public void Validate()
    {
        if (Steps is < 1) throw new ArgumentException($"self-training steps {Steps} must be at least 1");
        if (Threshold is < 0 or > 1 || double.IsNaN(Threshold)) throw new ArgumentException($"self-training threshold {Threshold} must be in [0, 1]");
        if (UnlabelledShare is <= 0 or >= 1 || double.IsNaN(UnlabelledShare))
            throw new ArgumentException($"self-training unlabelled share {UnlabelledShare} must be in (0, 1): batches mix labelled and pseudo-labelled images");
        if (Rounds < 1) throw new ArgumentException($"self-training rounds {Rounds} must be at least 1");
    }
}

/// <summary>How many of the unlabelled images one round pseudo-labelled.</summary>
public sealed record PseudoLabelRound(int Round, long PseudoLabelled, long Unlabelled);

/// <summary>The last round's fine-tuning result and each round's pseudo-label count.</summary>
public sealed record SelfTrainingResult(FineTuneResult FineTuning, IReadOnlyList<PseudoLabelRound> Rounds);
