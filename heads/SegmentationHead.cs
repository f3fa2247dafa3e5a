using System.Globalization;
using System.Text.Json.Nodes;
using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>
/// Semantic segmentation, 2D or 3D: a dense read-out (<see cref="DenseReadout"/>) gives logits for
/// <see cref="Classes"/> classes (background is class 0) at every pixel or voxel of the input, trained with
/// Dice + cross-entropy (<see cref="DiceCELoss"/>, MONAI's DiceCELoss) against the batch's label maps [B,1,…].
/// <see cref="Predict"/> gives the label map [B,1,…] (the argmax). Volumes larger than the training crop are
/// predicted by sliding windows (<see cref="FineTuning.FineTuner.PredictSlidingWindow"/>), which blend the logits.
/// </summary>
public sealed class SegmentationHead : Head
{
    public const string KindName = "segmentation";

    private readonly DenseReadout readout;

    /// <param name="config">The model's config.</param>
    /// <param name="classes">Classes, background included (2 for one structure).</param>
    /// <param name="dimensionality">Images [C,H,W] (the default) or volumes [C,D,H,W].</param>
    /// <param name="pixelContext">The neighbourhood width the queries see (<see cref="DenseReadout"/>); 0: position queries only.</param>
    public SegmentationHead(MedformerConfig config, int classes, Dimensionality? dimensionality = null, int pixelContext = 3, DiceCELoss? loss = null,
        string task = "segmentation") : base("SegmentationHead", task)
    {
        if (classes < 2) throw new ArgumentException($"classes {classes} must be at least 2 (background and one structure)");
        Classes = classes;
        Dimensionality = dimensionality ?? Dimensionality.Image;
        Criterion = loss ?? new DiceCELoss();
        readout = new DenseReadout(config, classes, pixelContext);
        RegisterComponents();
    }

    public override string Kind => KindName;

    public override HeadOutput Output => HeadOutput.Mask;

    public int Classes { get; }

    public Dimensionality Dimensionality { get; }

    public DiceCELoss Criterion { get; }

    public override JsonObject Settings() => new()
    {
        ["classes"] = Classes,
        ["dimensionality"] = Dimensionality.Name,
        ["pixel_context"] = readout.PixelContext,
        ["lambda_dice"] = Criterion.LambdaDice,
        ["lambda_ce"] = Criterion.LambdaCe,
    };

    /// <summary>Rebuilds a head from its settings (head.json, or <c>--head segmentation:classes=3,dimensionality=3d</c>).</summary>
    public static SegmentationHead FromSettings(MedformerConfig config, string task, JsonObject settings)
    {
        HeadRegistry.RequireKnown(settings, KindName, "classes", "dimensionality", "pixel_context", "lambda_dice", "lambda_ce");
        int classes = HeadSettings.Integer(settings, KindName, "classes", null);
        var loss = new DiceCELoss(HeadSettings.Number(settings, KindName, "lambda_dice", 1), HeadSettings.Number(settings, KindName, "lambda_ce", 1));
        return new SegmentationHead(config, classes, Dimensionality.Parse(HeadRegistry.Text(settings, "dimensionality") ?? "2d",
            $"{KindName} head: dimensionality"),
            HeadSettings.Integer(settings, KindName, "pixel_context", 3), loss, task);
    }

    public override IReadOnlyList<Linear> OutputLayers => [readout.fc];

    /// <summary>latents and images [B,C,…] → fp32 logits [B,K,…] at the images' resolution.</summary>
    public override Tensor forward(HeadInput input)
    {
        var images = DensePrediction.Images(input, Dimensionality, KindName);
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(readout.Forward(input.Model, input.Latents, images, input.SpatialShape).to(ScalarType.Float32));
    }

    public override Tensor Losses(Tensor outputs, Batch batch) => Criterion.PerSample(outputs, Labels(batch, outputs.device));

    public override bool CombinesTargets => true;

    /// <summary>The label maps as one-hot maps [B,K,…] (fp32).</summary>
    public override Tensor SoftTargets(Batch batch, Device device)
    {
        using var scope = NewDisposeScope();
        var labels = Labels(batch, device).to(ScalarType.Int64).squeeze(1);
        return scope.MoveToOuter(nn.functional.one_hot(labels, Classes).movedim([-1L], [1L]).to(ScalarType.Float32));
    }

    /// <summary>Dice + cross-entropy against soft maps [B,K,…] (<see cref="DiceCELoss.PerSampleSoft"/>); with one-hot maps, <see cref="Losses"/>.</summary>
    public override Tensor SoftLosses(Tensor outputs, Tensor targets, bool labels = true) => Criterion.PerSampleSoft(outputs, targets);

    /// <summary>The softmax over classes [B,K,…].</summary>
    public override Tensor SoftPredictions(Tensor outputs) => outputs.to(ScalarType.Float32).softmax(1);

    /// <summary>Logits [B,K,…] → the label map [B,1,…] (int64).</summary>
    public override Tensor Predict(Tensor outputs) => outputs.argmax(1, keepdim: true);

    public override HeadMetric CreateMetric() => new SegmentationMetric(Classes);

    /// <summary>The batch's label maps [B,1,…] on the device, each checked against the head's classes.</summary>
    internal Tensor Labels(Batch batch, Device device)
    {
        var targets = DensePrediction.Targets(batch, KindName);
        var images = batch.Images;
        if (targets.dim() != images.dim() || targets.shape[1] != 1 || !targets.shape[2..].SequenceEqual(images.shape[2..]))
            throw new ArgumentException($"{batch.Metas[0]}: label maps [{string.Join(",", targets.shape)}] must be [B,1,…] on the images' " +
                $"grid [{string.Join(",", images.shape)}]");
        if (targets.is_floating_point())
            throw new ArgumentException($"{batch.Metas[0]}: label maps must hold integer classes, not {targets.dtype} (an image-to-image target?)");
        using (var scope = NewDisposeScope())
        {
            var high = targets.flatten(1).amax([1]);
            var low = targets.flatten(1).amin([1]);
            for (int i = 0; i < batch.Count; i++)
            {
                long max = high[i].item<long>(), min = low[i].item<long>();
                if (min < 0 || max >= Classes)
                    throw new ArgumentException($"{batch.Metas[i]}: label {(min < 0 ? min : max)} is outside the head's {Classes} classes " +
                        $"(0..{Classes - 1}); build the head with classes: {Math.Max(max + 1, Classes)}");
            }
        }
        return targets.to(device);
    }
}

/// <summary>Dice per class over all pixels of an evaluation (MONAI's DiceMetric, reduced over the whole set): "dice" is the mean over foreground
/// classes.</summary>
public sealed class SegmentationMetric(int classes) : HeadMetric
{
    readonly double[] overlap = new double[classes], predicted = new double[classes], truth = new double[classes];

    public override void Update(Tensor predictions, Batch batch)
    {
        using var scope = NewDisposeScope();
        var labels = DensePrediction.Targets(batch, SegmentationHead.KindName).to(ScalarType.Int64).cpu();
        var masks = predictions.to(ScalarType.Int64).cpu();
        for (int k = 0; k < classes; k++)
        {
            var p = masks.eq(k);
            var t = labels.eq(k);
            overlap[k] += p.logical_and(t).sum().item<long>();
            predicted[k] += p.sum().item<long>();
            truth[k] += t.sum().item<long>();
        }
    }

    public override IReadOnlyDictionary<string, double> Compute()
    {
        var dice = Enumerable.Range(0, classes).Select(k => predicted[k] + truth[k] > 0 ? 2 * overlap[k] / (predicted[k] + truth[k]) : 1.0).ToArray();
        var result = new Dictionary<string, double> { ["dice"] = dice.Skip(1).Average() };
        for (int k = 0; k < classes; k++) result[$"dice_{k.ToString(CultureInfo.InvariantCulture)}"] = dice[k];
        return result;
    }
}
