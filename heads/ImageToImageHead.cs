using System.Text.Json.Nodes;
using Medformer.Datasets.Loading;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;
using Medformer.Runtime;

namespace Medformer.Heads;

/// <summary>
/// Image-to-image, 2D or 3D, in three kinds: <c>restoration</c> (PET at 60 s of exposure to 90 s, denoising: the
/// input's grid, a correction of the input), <c>super-resolution</c> (×2 or ×4: a correction of the bi/trilinear
/// upsampling) and <c>translation</c> (another modality on the same grid, predicted outright). A dense read-out
/// (<see cref="DenseReadout"/>) predicts <see cref="OutChannels"/> values per pixel of the output grid (the
/// input's × <see cref="Scale"/>); with <see cref="Residual"/> they are added to the input's first channels,
/// upsampled to that grid, and, zero-initialised, the head starts at the input itself. Trained with
/// <see cref="ImageLoss"/> (L1, MSE, SSIM) against the batch's target images [B,OutChannels,…].
/// </summary>
public sealed class ImageToImageHead : Head
{
    public const string Restoration = "restoration";
    public const string SuperResolution = "super-resolution";
    public const string Translation = "translation";

    private readonly DenseReadout readout;
    private readonly string kind;

    public ImageToImageHead(MedformerConfig config, string kind = Restoration, Dimensionality? dimensionality = null, int outChannels = 1, int scale = 1,
        bool? residual = null, ImageLoss? loss = null, int pixelContext = 3, string task = "image_to_image") : base("ImageToImageHead", task)
    {
        if (kind is not (Restoration or SuperResolution or Translation))
            throw new ArgumentException($"image-to-image kind '{kind}': expected {Restoration}, {SuperResolution} or {Translation}");
        if (kind == SuperResolution ? scale is not (2 or 4) : scale != 1)
            throw new ArgumentException($"{kind}: scale {scale} must be {(kind == SuperResolution ? "2 or 4" : "1 (super-resolution changes the grid)")}");
        if (outChannels < 1) throw new ArgumentException($"out channels {outChannels} must be at least 1");
        this.kind = kind;
        Dimensionality = dimensionality ?? Dimensionality.Image;
        OutChannels = outChannels;
        Scale = scale;
        Residual = residual ?? kind != Translation;
        Criterion = loss ?? new ImageLoss();
        Criterion.Validate();
        readout = new DenseReadout(config, outChannels, pixelContext);
        RegisterComponents();
    }

    public override string Kind => kind;

    public override HeadOutput Output => HeadOutput.Image;

    public Dimensionality Dimensionality { get; }

    public int OutChannels { get; }

    /// <summary>The output grid over the input's: 1, or 2 or 4 for super-resolution.</summary>
    public int Scale { get; }

    public bool Residual { get; }

    public ImageLoss Criterion { get; }

    public override JsonObject Settings() => new()
    {
        ["dimensionality"] = Dimensionality.Name,
        ["out_channels"] = OutChannels,
        ["scale"] = Scale,
        ["residual"] = Residual,
        ["pixel_context"] = readout.PixelContext,
        ["l1"] = Criterion.L1,
        ["mse"] = Criterion.Mse,
        ["ssim"] = Criterion.Ssim,
        ["data_range"] = Criterion.DataRange,
    };

    /// <summary>The factory of one kind (head.json, or <c>--head super-resolution:scale=4,ssim=0.5</c>).</summary>
    public static HeadRegistry.Factory FromSettings(string kind) => (config, task, settings) =>
    {
        HeadRegistry.RequireKnown(settings, kind, "dimensionality", "out_channels", "scale", "residual", "pixel_context", "l1", "mse", "ssim", "data_range");
        var loss = new ImageLoss(HeadSettings.Number(settings, kind, "l1", 1), HeadSettings.Number(settings, kind, "mse", 0),
            HeadSettings.Number(settings, kind, "ssim", 0), HeadSettings.OptionalNumber(settings, kind, "data_range"));
        return new ImageToImageHead(config, kind, Dimensionality.Parse(HeadRegistry.Text(settings, "dimensionality") ?? "2d", $"{kind} head: dimensionality"),
            HeadSettings.Integer(settings, kind, "out_channels", 1), HeadSettings.Integer(settings, kind, "scale", kind == SuperResolution ? 2 : 1),
            HeadSettings.Flag(settings, kind, "residual", kind != Translation), loss, HeadSettings.Integer(settings, kind, "pixel_context", 3), task);
    };

    public override IReadOnlyList<Linear> OutputLayers => [readout.fc];

    /// <summary>latents and images [B,C,…] → fp32 output images [B,OutChannels,…×Scale].</summary>
    public override Tensor forward(HeadInput input)
    {
        var images = DensePrediction.Images(input, Dimensionality, kind);
        if (Residual && images.shape[1] < OutChannels)
            throw new ArgumentException($"{input.Metas[0]}: a residual head adds its {OutChannels} output channel(s) to the input's first " +
                $"ones, and the input has {images.shape[1]}");
        using var scope = NewDisposeScope();
        long[] size = [.. input.SpatialShape.Select(n => n * Scale)];
        var output = readout.Forward(input.Model, input.Latents, images, size).to(ScalarType.Float32);
        if (Residual)
        {
            var basis = images.narrow(1, 0, OutChannels).to(ScalarType.Float32);
            if (Scale > 1) basis = F.interpolate(basis, size, mode: images.dim() == 4 ? InterpolationMode.Bilinear : InterpolationMode.Trilinear,
                align_corners: false);
            output = output + basis;
        }
        return scope.MoveToOuter(output);
    }

    public override Tensor Losses(Tensor outputs, Batch batch)
    {
        using var scope = NewDisposeScope();
        var (losses, _) = Criterion.PerSample(outputs, Targets(batch, outputs.device));
        return scope.MoveToOuter(losses);
    }

    /// <summary>The output images themselves (fp32).</summary>
    public override Tensor Predict(Tensor outputs) => outputs.to(ScalarType.Float32);

    public override HeadMetric CreateMetric() => new ImageMetric(this);

    /// <summary>The batch's target images [B,OutChannels,…×Scale] on the device, or a clear error naming the sample.</summary>
    internal Tensor Targets(Batch batch, Device device)
    {
        var images = batch.Images;
        var target = DensePrediction.Targets(batch, kind);
        long[] expected = [images.shape[0], OutChannels, .. images.shape[2..].Select(n => n * Scale)];
        if (!target.shape.SequenceEqual(expected))
            throw new ArgumentException($"{batch.Metas[0]}: target [{string.Join(",", target.shape[1..])}] does not match the input " +
                $"[{string.Join(",", images.shape[1..])}]: "
                + $"the {kind} head expects [{string.Join(",", expected[1..])}] ({OutChannels} channel(s) on the input's grid × {Scale})");
        if (!target.is_floating_point())
            throw new ArgumentException($"{batch.Metas[0]}: the target is {target.dtype}, a label map? an image-to-image head needs float target images");
        return target.to(device);
    }
}

/// <summary>Mean absolute and squared error over all pixels of an evaluation, and the mean SSIM per image where images are 11 pixels a side or more (data
/// range: each target's max − min).</summary>
public sealed class ImageMetric(ImageToImageHead head) : HeadMetric
{
    double absolute, squared, pixels, ssim;
    long images;

    public override void Update(Tensor predictions, Batch batch)
    {
        using var scope = NewDisposeScope();
        var target = head.Targets(batch, CPU).to(ScalarType.Float32);
        var difference = predictions.to(ScalarType.Float32).cpu() - target;
        absolute += difference.abs().sum().item<float>();
        squared += difference.square().sum().item<float>();
        pixels += target.numel();
        if (target.shape[2..].All(n => n >= 11))
        {
            var range = (target.flatten(1).amax([1]) - target.flatten(1).amin([1])).clamp_min(1e-6);
            ssim += Ssim.PerSample(predictions.to(ScalarType.Float32).cpu(), target, range).sum().item<float>();
            images += target.shape[0];
        }
    }

    public override IReadOnlyDictionary<string, double> Compute()
    {
        var result = new Dictionary<string, double> { ["l1"] = absolute / pixels, ["mse"] = squared / pixels };
        if (images > 0) result["ssim"] = ssim / images;
        return result;
    }
}
