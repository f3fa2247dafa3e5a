using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Pretrain.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>
/// Semantic segmentation, 2D and 3D, by fine-tuning a Medformer through the shared <see cref="Trainer"/>: a dense
/// read-out (<see cref="DenseReadout"/>) gives per-pixel or per-voxel logits for <c>classes</c> classes (background
/// is class 0) at the input's full resolution, trained with Dice + cross-entropy (<see cref="DiceCELoss"/>) against
/// the batch's label maps [B,1,…]. Samples select the "segmentation" task bank. Volumes larger than the training
/// crop are predicted by sliding windows (<see cref="Predict"/>).
/// </summary>
public sealed class SegmentationTask : TrainingTask
{
    private readonly Network network;

    /// <param name="dimensionality">"2d" (images [C,H,W]) or "3d" (volumes [C,D,H,W]): what the head segments.</param>
    public SegmentationTask(Medformer model, int classes, string dimensionality = "2d", int pixelContext = 3, DiceCELoss? loss = null, bool freezeEncoder = false)
    {
        if (classes < 2) throw new ArgumentException($"classes {classes} must be at least 2 (background and one structure)");
        Dimensionality = DensePrediction.CheckDimensionality(dimensionality);
        Classes = classes;
        Criterion = loss ?? new DiceCELoss();
        network = new Network(model, classes, pixelContext);
        if (freezeEncoder)
            foreach (var p in model.parameters()) p.requires_grad = false;
    }

    public const string Task = "segmentation";

    public int Classes { get; }

    /// <summary>"2d" or "3d".</summary>
    public string Dimensionality { get; }

    public DiceCELoss Criterion { get; }

    public override nn.Module Module => network;

    public override Medformer Model => network.Model;

    public override string? NoPerSampleLoss => null;

    public override IReadOnlyList<Linear> LastLayers => [network.readout.fc];

    public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var labels = Labels(batch);
        var loss = Criterion.Loss(network.Logits(step.Cast(batch.Images), batch.Metas), labels);
        return (scope.MoveToOuter(loss), new Dictionary<string, Tensor>());
    }

    public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var labels = Labels(batch);
        var losses = Criterion.PerSample(network.Logits(step.Cast(batch.Images), batch.Metas), labels);
        return (scope.MoveToOuter(losses), new Dictionary<string, Tensor>());
    }

    /// <summary>
    /// Class probabilities [N,K,…] (fp32, CPU) of images [N,C,…] with their metas, in eval mode. With
    /// <paramref name="roi"/> (the training crop, say) each image is predicted by sliding windows of that size
    /// (<see cref="SlidingWindow"/>: any size, smaller ones padded); without, whole, and its sizes must be multiples
    /// of the model's patch size. The mask is the argmax over classes.
    /// </summary>
    public Tensor PredictProbabilities(Tensor images, IReadOnlyList<SampleMeta> metas, long[]? roi = null, SlidingWindowOptions? options = null) =>
        DensePrediction.Run(network, network.Model, Dimensionality, images, metas, roi, options,
            (windows, windowMetas) => network.Logits(windows, windowMetas).softmax(1));

    /// <summary>The label map [1,…] (int64, CPU) of one image [C,…]: the argmax of <see cref="PredictProbabilities"/>.</summary>
    public Tensor Predict(Tensor image, SampleMeta meta, long[]? roi = null, SlidingWindowOptions? options = null)
    {
        using var scope = NewDisposeScope();
        var probabilities = PredictProbabilities(image.unsqueeze(0), [meta], roi, options);
        return scope.MoveToOuter(probabilities.argmax(1));
    }

    Tensor Labels(Batch batch)
    {
        DensePrediction.CheckBatch(batch, Dimensionality, "segmentation");
        var targets = batch.Views[0].Targets
            ?? throw new ArgumentException($"{batch.Metas[0]}: segmentation needs a label map per sample, and the batch has none");
        var images = batch.Images;
        if (targets.dim() != images.dim() || targets.shape[1] != 1 || !targets.shape[2..].SequenceEqual(images.shape[2..]))
            throw new ArgumentException($"{batch.Metas[0]}: label maps [{string.Join(",", targets.shape)}] must be [B,1,…] on the images' grid [{string.Join(",", images.shape)}]");
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
                    throw new ArgumentException($"{batch.Metas[i]}: label {(min < 0 ? min : max)} is outside the head's {Classes} classes (0..{Classes - 1})");
            }
        }
        return targets.to(images.device);
    }

    public override void Dispose() => network.Dispose();

    /// <summary>The trainable module: "model" (the Medformer, as checkpoints expect) and the read-out.</summary>
    sealed class Network : nn.Module
    {
        private readonly Medformer model;
        internal readonly DenseReadout readout;

        public Network(Medformer model, int classes, int pixelContext) : base("Segmentation")
        {
            this.model = model;
            readout = new DenseReadout(model.Config, classes, pixelContext);
            RegisterComponents();
        }

        public Medformer Model => model;

        /// <summary>images [B,C,…] → fp32 logits [B,K,…] at the images' resolution.</summary>
        public Tensor Logits(Tensor images, IReadOnlyList<SampleMeta> metas)
        {
            using var scope = NewDisposeScope();
            var latents = model.forward(images, DensePrediction.Keys(metas, Task, images));
            return scope.MoveToOuter(readout.Forward(model, latents, images, images.shape[2..]).to(ScalarType.Float32));
        }
    }
}
