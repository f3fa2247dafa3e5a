using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Pretrain.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>
/// Image-to-image by fine-tuning a Medformer through the shared <see cref="Trainer"/>, 2D and 3D: restoration
/// (PET at 60 s of exposure to 90 s, denoising), super-resolution (×2, ×4) and translation between modalities. A
/// dense read-out (<see cref="DenseReadout"/>) predicts <c>outChannels</c> values per pixel on the output grid (the
/// input's, × <c>scale</c>); with <c>residual</c> it predicts a correction to the input's first channels, upsampled
/// (bi/trilinear) to that grid, and, zero-initialised, starts at the input itself. Trained with <see cref="ImageLoss"/>
/// (L1, MSE, SSIM) against the batch's target images [B,outChannels,…]. Samples select the "image_to_image" task bank.
/// </summary>
public sealed class ImageToImageTask : TrainingTask
{
    private readonly Network network;

    public ImageToImageTask(Medformer model, string dimensionality = "2d", int outChannels = 1, int scale = 1, bool residual = true,
        ImageLoss? loss = null, int pixelContext = 3, bool freezeEncoder = false)
    {
        if (scale is not (1 or 2 or 4)) throw new ArgumentException($"scale {scale}: the output grid is the input's × 1, 2 or 4");
        if (outChannels < 1) throw new ArgumentException($"out channels {outChannels} must be at least 1");
        Dimensionality = DensePrediction.CheckDimensionality(dimensionality);
        Criterion = loss ?? new ImageLoss();
        Criterion.Validate();
        network = new Network(model, outChannels, scale, residual, pixelContext);
        if (freezeEncoder)
            foreach (var p in model.parameters()) p.requires_grad = false;
    }

    /// <summary>Denoising at the input's resolution, as a correction of the input (PET 60 s → 90 s).</summary>
    public static ImageToImageTask Restoration(Medformer model, string dimensionality = "3d", ImageLoss? loss = null) =>
        new(model, dimensionality, loss: loss);

    /// <summary>×2 or ×4, as a correction of the bi/trilinear upsampling.</summary>
    public static ImageToImageTask SuperResolution(Medformer model, int scale, string dimensionality = "2d", ImageLoss? loss = null) =>
        new(model, dimensionality, scale: scale, loss: loss);

    /// <summary>Another modality on the same grid (MRI to PET), predicted outright.</summary>
    public static ImageToImageTask Translation(Medformer model, string dimensionality = "3d", int outChannels = 1, ImageLoss? loss = null) =>
        new(model, dimensionality, outChannels, residual: false, loss: loss);

    public const string Task = "image_to_image";

    public string Dimensionality { get; }

    public int Scale => network.Scale;

    public int OutChannels => network.OutChannels;

    public bool Residual => network.Residual;

    public ImageLoss Criterion { get; }

    public override nn.Module Module => network;

    public override Medformer Model => network.Model;

    public override string? NoPerSampleLoss => null;

    public override IReadOnlyList<Linear> LastLayers => [network.readout.fc];

    public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var target = Targets(batch);
        var (losses, parts) = Criterion.PerSample(network.Predict(step.Cast(batch.Images), batch.Metas), target);
        var means = parts.ToDictionary(p => p.Key, p => scope.MoveToOuter(p.Value.mean()));
        return (scope.MoveToOuter(losses.mean()), means);
    }

    public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var target = Targets(batch);
        var (losses, parts) = Criterion.PerSample(network.Predict(step.Cast(batch.Images), batch.Metas), target);
        foreach (var part in parts.Values) scope.MoveToOuter(part);
        return (scope.MoveToOuter(losses), parts);
    }

    /// <summary>
    /// Output images [N,outChannels,…×scale] (fp32, CPU) of inputs [N,C,…] with their metas, in eval mode: whole, or
    /// by sliding windows of <paramref name="roi"/> (input pixels) blended on the output grid.
    /// </summary>
    public Tensor PredictImages(Tensor images, IReadOnlyList<SampleMeta> metas, long[]? roi = null, SlidingWindowOptions? options = null) =>
        DensePrediction.Run(network, network.Model, Dimensionality, images, metas, roi, options, network.Predict);

    /// <summary>One output image [outChannels,…×scale] (fp32, CPU) of an input [C,…].</summary>
    public Tensor Predict(Tensor image, SampleMeta meta, long[]? roi = null, SlidingWindowOptions? options = null)
    {
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(PredictImages(image.unsqueeze(0), [meta], roi, options).squeeze(0));
    }

    Tensor Targets(Batch batch)
    {
        DensePrediction.CheckBatch(batch, Dimensionality, "image-to-image");
        var images = batch.Images;
        var target = batch.Views[0].Targets
            ?? throw new ArgumentException($"{batch.Metas[0]}: image-to-image needs a target image per sample, and the batch has none");
        long[] expected = [images.shape[0], OutChannels, .. images.shape[2..].Select(n => n * Scale)];
        if (!target.shape.SequenceEqual(expected))
            throw new ArgumentException($"{batch.Metas[0]}: target [{string.Join(",", target.shape[1..])}] does not match the input [{string.Join(",", images.shape[1..])}]: "
                + $"the head expects [{string.Join(",", expected[1..])}] ({OutChannels} channel(s) on the input's grid × {Scale})");
        if (!target.is_floating_point())
            throw new ArgumentException($"{batch.Metas[0]}: the target is {target.dtype}, a label map? image-to-image needs float target images");
        return target;
    }

    public override void Dispose() => network.Dispose();

    /// <summary>The trainable module: "model" (the Medformer, as checkpoints expect) and the read-out.</summary>
    sealed class Network : nn.Module
    {
        private readonly Medformer model;
        internal readonly DenseReadout readout;

        public Network(Medformer model, int outChannels, int scale, bool residual, int pixelContext) : base("ImageToImage")
        {
            this.model = model;
            OutChannels = outChannels;
            Scale = scale;
            Residual = residual;
            readout = new DenseReadout(model.Config, outChannels, pixelContext);
            RegisterComponents();
        }

        public Medformer Model => model;
        public int OutChannels { get; }
        public int Scale { get; }
        public bool Residual { get; }

        /// <summary>images [B,C,…] → fp32 outputs [B,outChannels,…×scale].</summary>
        public Tensor Predict(Tensor images, IReadOnlyList<SampleMeta> metas)
        {
            if (Residual && images.shape[1] < OutChannels)
                throw new ArgumentException($"{metas[0]}: a residual head adds its {OutChannels} output channel(s) to the input's first ones, and the input has {images.shape[1]}");
            using var scope = NewDisposeScope();
            long[] size = [.. images.shape[2..].Select(n => n * Scale)];
            var latents = model.forward(images, DensePrediction.Keys(metas, Task, images));
            var output = readout.Forward(model, latents, images, size).to(ScalarType.Float32);
            if (Residual)
            {
                var basis = images.narrow(1, 0, OutChannels).to(ScalarType.Float32);
                if (Scale > 1)
                    basis = F.interpolate(basis, size, mode: images.dim() == 4 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear, align_corners: false);
                output = output + basis;
            }
            return scope.MoveToOuter(output);
        }
    }
}
