using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>The kind of labels a classification head learns: MedMNIST's task types.</summary>
public enum LabelKind
{
    /// <summary>One class of K per sample: softmax, cross-entropy (optionally label-smoothed).</summary>
    MultiClass,
    /// <summary>K independent 0/1 labels per sample: sigmoid, binary cross-entropy per label.</summary>
    MultiLabel,
    /// <summary>Two classes: one logit, binary cross-entropy; probabilities [B,2].</summary>
    Binary,
    /// <summary>K ordered grades: a cumulative-link (proportional-odds) model, one score and K−1 ordered thresholds.</summary>
    Ordinal,
}

/// <summary>How the latent array [B,N,d] is read out.</summary>
public enum Pooling
{
    /// <summary>The latents laid side by side [B,N·d]: each latent is a learned slot, so their order carries meaning.</summary>
    Flatten,
    /// <summary>The mean over latents [B,d].</summary>
    Mean,
    /// <summary>One learned query reads the latents through the model's decoder (Perceiver IO) [B,d].</summary>
    Query,
    /// <summary>One learned query per output (class) reads the latents [B,K,d]; a shared linear layer gives each its logit.</summary>
    ClassQueries,
}

/// <summary>
/// Classification for every MedMNIST task type (<see cref="LabelKind"/>): the latents, read out by
/// <see cref="Pooling"/>, then LayerNorm and a linear layer, zero-initialised so training starts at the uniform
/// prediction (ordinal: thresholds at the uniform distribution's quantiles). Labels come from
/// <see cref="Datasets.SampleMeta.Labels"/>: one class index per sample (multi-class, binary, ordinal) or one 0/1
/// entry per class (multi-label). <see cref="Predict"/> gives class probabilities [B,classes] in every case, so
/// accuracy and AUC are computed alike (MedMNIST scores ordinal tasks as multi-class).
/// </summary>
public sealed class ClassificationHead : Head
{
    public const string KindName = "classification";

    private readonly Parameter? queries;
    private readonly LayerNorm norm;
    private readonly Linear fc;
    private readonly Parameter? thresholds;

    /// <param name="config">The model's config (its width and latent count size the layers).</param>
    /// <param name="classes">Classes (multi-class, binary: 2, ordinal: grades) or labels (multi-label).</param>
    /// <param name="labelSmoothing">Multi-class only: the uniform share mixed into the targets (0.1 gave +1 point at 1% of Fashion-MNIST's labels).</param>
    /// <param name="task">The latent task bank the samples select.</param>
    public ClassificationHead(MedformerConfig config, int classes, LabelKind type = LabelKind.MultiClass, Pooling pooling = Pooling.Flatten,
        double labelSmoothing = 0, string task = "classification") : base("ClassificationHead", task)
    {
        if (classes < 2) throw new ArgumentException($"classes {classes} must be at least 2");
        if (type == LabelKind.Binary && classes != 2) throw new ArgumentException($"a binary head has 2 classes, not {classes}");
        if (labelSmoothing is < 0 or >= 1) throw new ArgumentException($"label smoothing {labelSmoothing} must be in [0, 1)");
        if (labelSmoothing > 0 && type != LabelKind.MultiClass) throw new ArgumentException($"label smoothing applies to multi-class heads, not {type}");
        Classes = classes;
        Type = type;
        Pooling = pooling;
        LabelSmoothing = labelSmoothing;
        int d = config.Dim;
        int width = pooling == Pooling.Flatten ? d * config.LatentCount : d;
        if (pooling == Pooling.Query) queries = Runtime.Init.TruncatedNormalParameter([1, 1, d]);  // as the model's latents
        if (pooling == Pooling.ClassQueries)
        {
            // Unit-scale class queries: at the latents' 0.02 they decode to nearly the same vector, and with the
            // zero-initialised output layer the classes never separate (the loss stays at ln K).
            queries = Runtime.Init.TruncatedNormalParameter([1, Outputs, d], std: 1.0);
        }
        norm = nn.LayerNorm(width);
        fc = nn.Linear(width, pooling == Pooling.ClassQueries ? 1 : Outputs);
        using (torch.no_grad())
        {
            nn.init.zeros_(fc.weight!);
            nn.init.zeros_(fc.bias!);
        }
        if (type == LabelKind.Ordinal)
        {
            // P(y ≤ k) = σ(θ_k − score), θ increasing: θ_0 free, then softplus steps. Start at logit((k+1)/K): uniform.
            var start = Enumerable.Range(1, classes - 1).Select(k => Math.Log((double)k / (classes - k))).ToArray();
            var raw = new float[classes - 1];
            raw[0] = (float)start[0];
            for (int k = 1; k < raw.Length; k++) raw[k] = (float)Math.Log(Math.Exp(start[k] - start[k - 1]) - 1);  // softplus⁻¹ of the step
            thresholds = new Parameter(tensor(raw));
        }
        RegisterComponents();
    }

    public override string Kind => KindName;

    public int Classes { get; }

    public LabelKind Type { get; }

    public Pooling Pooling { get; }

    public double LabelSmoothing { get; }

    /// <summary>Raw outputs per sample: a logit per class (multi-class, multi-label), one logit (binary) or one score (ordinal).</summary>
    public int Outputs => Type switch
    {
        LabelKind.Binary or LabelKind.Ordinal => 1,
        _ => Classes,
    };

    public override JsonObject Settings() => new()
    {
        ["classes"] = Classes,
        ["type"] = TaskTypes.Name(Type),
        ["pooling"] = Pooling == Pooling.ClassQueries ? "class_queries" : Pooling.ToString().ToLowerInvariant(),
        ["label_smoothing"] = LabelSmoothing,
    };

    /// <summary>Rebuilds a head from its settings (head.json, or <c>--head classification:pooling=query,label_smoothing=0.1</c>).</summary>
    public static ClassificationHead FromSettings(MedformerConfig config, string task, JsonObject settings)
    {
        HeadRegistry.RequireKnown(settings, KindName, "classes", "type", "pooling", "label_smoothing");
        string classesText = HeadRegistry.Text(settings, "classes") ?? throw new ArgumentException($"head '{KindName}': 'classes' is missing");
        if (!int.TryParse(classesText, CultureInfo.InvariantCulture, out int classes))
            throw new ArgumentException($"head '{KindName}': classes '{classesText}' is not an integer");
        var type = HeadRegistry.Text(settings, "type") is { } typeName ? TaskTypes.Parse(typeName) : LabelKind.MultiClass;
        var pooling = HeadRegistry.Text(settings, "pooling") switch
        {
            null or "flatten" => Pooling.Flatten,
            "mean" => Pooling.Mean,
            "query" => Pooling.Query,
            "classqueries" or "class_queries" => Pooling.ClassQueries,
            var other => throw new ArgumentException($"head '{KindName}': pooling '{other}' is not flatten, mean, query or class_queries"),
        };
        string smoothingText = HeadRegistry.Text(settings, "label_smoothing") ?? "0";
        if (!double.TryParse(smoothingText, CultureInfo.InvariantCulture, out double smoothing))
            throw new ArgumentException($"head '{KindName}': label_smoothing '{smoothingText}' is not a number");
        return new ClassificationHead(config, classes, type, pooling, smoothing, task);
    }

    public override IReadOnlyList<Linear> OutputLayers => [fc];

    /// <summary>latents [B,N,d] → fp32 raw outputs [B,<see cref="Outputs"/>].</summary>
    public override Tensor forward(HeadInput input)
    {
        using var scope = NewDisposeScope();
        var latents = input.Latents;
        var pooled = Pooling switch
        {
            Pooling.Flatten => latents.flatten(1),                                          // [B,N·d]
            Pooling.Mean => latents.mean([1]),                                              // [B,d]
            Pooling.Query => input.Model.Decode(latents, queries!.to(latents.dtype)).squeeze(1),   // [B,d]
            _ => input.Model.Decode(latents, queries!.to(latents.dtype)),                   // [B,K,d]
        };
        var outputs = fc.call(norm.call(pooled));
        if (Pooling == Pooling.ClassQueries) outputs = outputs.squeeze(-1);                 // [B,K,1] → [B,K]
        return scope.MoveToOuter(outputs.to(ScalarType.Float32));
    }

    public override Tensor Losses(Tensor outputs, Batch batch)
    {
        using var scope = NewDisposeScope();
        var losses = Type switch
        {
            LabelKind.MultiClass => F.cross_entropy(outputs, ClassLabels(batch, outputs.device), reduction: nn.Reduction.None, label_smoothing: LabelSmoothing),
            LabelKind.MultiLabel => F.binary_cross_entropy_with_logits(outputs, MultiLabels(batch, outputs.device), reduction: nn.Reduction.None).mean([1]),
            LabelKind.Binary => F.binary_cross_entropy_with_logits(outputs.squeeze(1), ClassLabels(batch, outputs.device).to(ScalarType.Float32),
                reduction: nn.Reduction.None),
            _ => -OrdinalProbabilities(outputs).gather(1, ClassLabels(batch, outputs.device).unsqueeze(1)).squeeze(1).clamp_min(1e-12).log(),
        };
        return scope.MoveToOuter(losses);
    }

    /// <summary>Every task type combines targets: class distributions (multi-label: a probability per label).</summary>
    public override bool CombinesTargets => true;

    /// <summary>[B,classes]: the one-hot class (multi-class, binary, ordinal) or the 0/1 labels (multi-label), fp32.</summary>
    public override Tensor SoftTargets(Batch batch, Device device)
    {
        using var scope = NewDisposeScope();
        var targets = Type == LabelKind.MultiLabel ? MultiLabels(batch, device) : F.one_hot(ClassLabels(batch, device), Classes).to(ScalarType.Float32);
        return scope.MoveToOuter(targets);
    }

    /// <summary>
    /// Soft-target losses [B] against distributions t [B,classes]: multi-class −Σ t'·log softmax with t' = (1−ε)·t + ε/K
    /// for labels (PyTorch's cross_entropy with probabilities and label_smoothing ε); multi-label the mean binary
    /// cross-entropy per label; binary the binary cross-entropy against t[:,1]; ordinal −Σ t·log P(y = k).
    /// With one-hot t each equals <see cref="Losses"/>.
    /// </summary>
    public override Tensor SoftLosses(Tensor outputs, Tensor targets, bool labels = true)
    {
        using var scope = NewDisposeScope();
        outputs = outputs.to(ScalarType.Float32);
        targets = targets.to(ScalarType.Float32).to(outputs.device);
        if (targets.dim() != 2 || targets.shape[0] != outputs.shape[0] || targets.shape[1] != Classes)
            throw new ArgumentException($"soft targets [{string.Join(",", targets.shape)}] must be [{outputs.shape[0]},{Classes}]");
        var losses = Type switch
        {
            LabelKind.MultiClass => -((labels && LabelSmoothing > 0 ? targets * (1 - LabelSmoothing) + LabelSmoothing / Classes
                : targets) * outputs.log_softmax(1)).sum([1]),
            LabelKind.MultiLabel => F.binary_cross_entropy_with_logits(outputs, targets, reduction: nn.Reduction.None).mean([1]),
            LabelKind.Binary => F.binary_cross_entropy_with_logits(outputs.squeeze(1), targets[.., 1], reduction: nn.Reduction.None),
            _ => -(targets * OrdinalProbabilities(outputs).clamp_min(1e-12).log()).sum([1]),
        };
        return scope.MoveToOuter(losses);
    }

    /// <summary>The class probabilities of <see cref="Predict"/>: the distributions soft targets are.</summary>
    public override Tensor SoftPredictions(Tensor outputs) => Predict(outputs);

    /// <summary>Class probabilities [B,classes] (multi-label: each label's own probability).</summary>
    public override Tensor Predict(Tensor outputs)
    {
        using var scope = NewDisposeScope();
        outputs = outputs.to(ScalarType.Float32);
        var probabilities = Type switch
        {
            LabelKind.MultiClass => outputs.softmax(1),
            LabelKind.MultiLabel => outputs.sigmoid(),
            LabelKind.Binary => cat([1 - outputs.sigmoid(), outputs.sigmoid()], 1),
            _ => OrdinalProbabilities(outputs),
        };
        return scope.MoveToOuter(probabilities);
    }

    public override HeadMetric CreateMetric() => new ClassificationMetric(Classes, Type == LabelKind.MultiLabel);

    /// <summary>Score [B,1] → P(y = k) [B,K] = σ(θ_k − s) − σ(θ_{k−1} − s), with σ(θ_{−1} − s) = 0 and σ(θ_{K−1} − s) = 1.</summary>
    Tensor OrdinalProbabilities(Tensor score)
    {
        using var scope = NewDisposeScope();
        var theta = cat([thresholds![..1], thresholds[1..].exp().log1p()]).cumsum(0);     // ordered [K−1]
        var below = (theta.unsqueeze(0) - score).sigmoid();                               // P(y ≤ k) [B,K−1]
        var zeros = torch.zeros(score.shape[0], 1, device: score.device);
        var ones = torch.ones(score.shape[0], 1, device: score.device);
        var cumulative = cat([zeros, below, ones], 1);                                    // [B,K+1]
        return scope.MoveToOuter(cumulative[.., 1..] - cumulative[.., ..^1]);
    }

    Tensor ClassLabels(Batch batch, Device device) => tensor(batch.Metas.Select(m =>
    {
        if (m.Labels.Length != 1)
            throw new ArgumentException($"{m}: a {TaskTypes.Name(Type)} head needs one class label per sample, not {m.Labels.Length} (a multi-label corpus?)");
        long label = m.Labels[0];
        if (label < 0 || label >= Classes) throw new ArgumentException($"{m}: label {label} is outside the head's {Classes} classes");
        return label;
    }).ToArray(), device: device);

    Tensor MultiLabels(Batch batch, Device device) => tensor(batch.Metas.SelectMany(m =>
    {
        if (m.Labels.Length != Classes)
            throw new ArgumentException($"{m}: the multi-label head has {Classes} labels, the sample {m.Labels.Length}");
        if (m.Labels.Any(l => l is not (0 or 1))) throw new ArgumentException($"{m}: multi-label labels must be 0 or 1, not [{string.Join(", ", m.Labels)}]");
        return m.Labels.Select(l => (float)l);
    }).ToArray(), [batch.Count, Classes], device: device);
}

/// <summary>Task types by MedMNIST's names ("multi-class", "multi-label", "binary-class", "ordinal-regression").</summary>
public static class TaskTypes
{
    public static string Name(LabelKind type) => type switch
    {
        LabelKind.MultiClass => "multi-class",
        LabelKind.MultiLabel => "multi-label",
        LabelKind.Binary => "binary-class",
        _ => "ordinal-regression",
    };

    public static LabelKind Parse(string name) => name switch
    {
        "multi-class" => LabelKind.MultiClass,
        "multi-label" => LabelKind.MultiLabel,
        "binary-class" or "binary" => LabelKind.Binary,
        "ordinal-regression" or "ordinal" => LabelKind.Ordinal,
        _ => throw new ArgumentException($"task type '{name}': expected multi-class, multi-label, binary-class or ordinal-regression"),
    };
}
