using System.Diagnostics;
using System.Text.Json.Nodes;
using Medformer.Runtime;
using Medformer.Datasets;
using Medformer.Eval.Metrics;
using Medformer.Eval.Reports;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Training;
using static TorchSharp.torch;

namespace Medformer.Eval.Protocols;

/// <summary>
/// A dense cell: fine-tunes the whole Medformer with a segmentation or image-to-image head (restoration,
/// super-resolution, translation; built by <see cref="HeadRegistry"/> from <c>KIND[:key=value,…]</c>) through the
/// <see cref="FineTuner"/>, keeps the weights of the best validation check, and scores each test case at its own
/// size (sliding windows of the training crop where it differs), averaging over cases:
/// <list type="bullet">
/// <item>segmentation: Dice and IoU (mean over the foreground classes present in the case's truth) and the 95%
/// Hausdorff distance in millimetres (cases whose prediction misses a class entirely, an infinite distance, are
/// left out of its mean);</item>
/// <item>image-to-image: MSE, SSIM and PSNR against the target (data range: the target's max − min), and for
/// restoration the seed talk's scores 100·(1 − Δr/Δo) for MSE and for 1 − SSIM (<see cref="RestorationScore"/>).</item>
/// </list>
/// The <see cref="Initialisation.GaussianFilter"/> row (restoration only) trains nothing: its σ is chosen on the
/// validation cases (<see cref="GaussianFilterBaseline.Fit"/>), the seed talk's first row.
/// </summary>
public sealed class DenseCells : ICellTrainer
{
    readonly EvaluationData data;
    readonly FineTuneSettings settings;
    readonly MedformerConfig randomConfig;
    readonly Device device;
    readonly Action<TrainerLog>? progress;
    readonly string kind, bank;
    readonly JsonObject headSettings;

    public DenseCells(EvaluationData data, string head, FineTuneSettings settings, MedformerConfig randomConfig, Device? device = null,
        Action<TrainerLog>? progress = null)
    {
        settings.Validate();
        var (kind, bank, headSettings) = HeadRegistry.ParseSpec(head);
        if (kind is not (SegmentationHead.KindName or ImageToImageHead.Restoration or ImageToImageHead.SuperResolution or ImageToImageHead.Translation))
            throw new ArgumentException($"--head '{head}': a dense protocol runs segmentation, restoration, super-resolution or translation");
        if (kind == SegmentationHead.KindName && data.MaskClasses == 0)
            throw new ArgumentException($"{data.Name}: its samples have no label maps to segment");
        if (kind != SegmentationHead.KindName && !data.ImageTargets)
            throw new ArgumentException($"{data.Name}: its samples have no target images for a {kind} head (a folder of PET studies: --task petct FOLDER)");
        using (var first = data.Train.Get(0)) headSettings.TryAdd("dimensionality", first.Meta.Dimensionality.Name);
        if (kind == SegmentationHead.KindName) headSettings.TryAdd("classes", data.MaskClasses);
        this.data = data;
        this.settings = settings;
        this.kind = kind;
        this.bank = bank ?? HeadRegistry.DefaultTask(kind);
        this.headSettings = headSettings;
        this.randomConfig = Pretrained.WithTasks(randomConfig, [this.bank]);
        this.device = device ?? DeviceSpec.Resolve(null);
        this.progress = progress;
        Selection = settings.Selection ?? (kind == SegmentationHead.KindName ? "dice" : "mse");
        bool fits = kind == SegmentationHead.KindName ? Selection == "dice" : Selection is "mse" or "l1" or "ssim";
        if (!fits) throw new
            ArgumentException($"--select '{Selection}': a {kind} run is chosen by {(kind == SegmentationHead.KindName ? "dice" : "mse, l1 or ssim")}");
        // Fails here, before any run, on settings the head does not take.
        using (var probe = HeadRegistry.Create(kind, this.randomConfig, this.bank, headSettings)) { }
    }

    string Selection { get; }

    bool Restoration => kind == ImageToImageHead.Restoration;

    public IReadOnlyList<MetricInfo> Metrics => kind == SegmentationHead.KindName
        ? [new("dice", "Dice"), new("iou", "IoU"), new("hd95", "HD95 (mm)", Scale: 1, HigherIsBetter: false)]
        : [.. (Restoration ? new MetricInfo[] { new("score_mse", "Restoration score, MSE (%)", Scale: 1), new("score_ssim", "Restoration score, 1 − SSIM (%)",
            Scale: 1) } : []),
            new("mse", "MSE", Scale: 1, HigherIsBetter: false, Decimals: 5), new("ssim", "SSIM", Scale: 1, Decimals: 4), new("psnr", "PSNR (dB)", Scale: 1,
                Decimals: 2)];

    public IReadOnlyDictionary<string, string> Settings => CellFineTuning.Settings(data.Name, settings, Selection, randomConfig,
        ("head", $"{kind}:{headSettings.ToJsonString()}, full fine-tuning"), ("roi", settings.FineTune.Roi is { } roi ? string.Join(",", roi) : "whole"));

    public CellResult Train(CellPlan plan, CancellationToken cancel = default)
    {
        if (plan.Init == Initialisation.GaussianFilter)
        {
            if (!Restoration) throw new ArgumentException($"the Gaussian filter baseline is a restoration row; this protocol runs {kind}");
            var clock = Stopwatch.StartNew();
            var fit = GaussianFilterBaseline.Fit(CellFineTuning.Validation(plan));
            var scores = Score((image, _) => fit.Best.Restore(image));
            return new CellResult(plan.Key.Init, plan.Key.Fraction, plan.Key.Seed, 0, scores, "mse", 0, fit.BestMse, clock.Elapsed.TotalSeconds, [],
                [.. fit.Grid.Select((g, i) => new CurvePoint(i, g.Mse))]);
        }
        using var tuner = CellFineTuning.Tuner(plan, bank, randomConfig, config => HeadRegistry.Create(kind, config, bank, headSettings));
        return CellFineTuning.Run(tuner, data, plan, settings, Selection, Selection is "mse" or "l1" ? "min" : "max", Selection, device, progress,
            () => Score((image, meta) => tuner.PredictWhole(image.unsqueeze(0), [meta]).squeeze(0)), cancel);
    }

    /// <summary>The test metrics of a predictor (an image [C,…] and its meta → its mask [1,…] or output image [C',…]; tensors of the caller's scope), averaged
    /// over the test cases.</summary>
    Dictionary<string, double> Score(Func<Tensor, SampleMeta, Tensor> predict)
    {
        var perCase = new Dictionary<string, List<double>>();
        void Add(string name, double value) => (perCase.TryGetValue(name, out var list) ? list : perCase[name] = []).Add(value);
        for (long i = 0; i < data.Test.Count; i++)
        {
            using var sample = data.Test.Get(i);
            using var scope = NewDisposeScope();
            var target = sample.Target ?? throw new ArgumentException($"{sample.Meta}: a test case without a target");
            var output = predict(sample.Image, sample.Meta);
            if (kind == SegmentationHead.KindName)
            {
                var (predicted, truth) = (output.squeeze(0), target.squeeze(0));
                int classes = data.MaskClasses;
                double[] spacing = sample.Meta.Spacing.Length == truth.dim() ? sample.Meta.Spacing : [.. Enumerable.Repeat(1.0, (int)truth.dim())];
                Add("dice", OverlapMetrics.NanMean(OverlapMetrics.Dice(predicted, truth, classes).Skip(1)));
                Add("iou", OverlapMetrics.NanMean(OverlapMetrics.IoU(predicted, truth, classes).Skip(1)));
                var distances = SurfaceDistance.Hausdorff95PerClass(predicted, truth, classes, spacing).Skip(1).Where(d => !double.IsNaN(d)).ToList();
                Add("hd95", distances.Count == 0 ? double.NaN : distances.Max() < double.PositiveInfinity ? distances.Average() : double.PositiveInfinity);
                continue;
            }
            var reference = target.to(ScalarType.Float32);
            if (!output.shape.SequenceEqual(reference.shape))
                throw new ArgumentException($"{sample.Meta}: the prediction [{string.Join(",", output.shape)}] does not match the target " +
                    $"[{string.Join(",", reference.shape)}]");
            double range = Math.Max((reference.max() - reference.min()).item<float>(), 1e-6);
            bool ssimFits = reference.shape[1..].All(n => n >= 11);
            double Ssim(Tensor image) => ssimFits
                ? Enumerable.Range(0, (int)reference.shape[0]).Average(c => ImageMetrics.Ssim(image[c], reference[c], range))
                : double.NaN;
            double mse = ImageMetrics.Mse(output, reference), ssim = Ssim(output);
            Add("mse", mse);
            Add("ssim", ssim);
            Add("psnr", 10 * Math.Log10(range * range / mse));
            if (Restoration)
            {
                var input = sample.Image.narrow(0, 0, reference.shape[0]).to(ScalarType.Float32);
                Add("score_mse", RestorationScore.Score(mse, ImageMetrics.Mse(input, reference)));
                Add("score_ssim", ssimFits ? RestorationScore.Score(1 - ssim, 1 - Ssim(input)) : double.NaN);
            }
        }
        return perCase.ToDictionary(p => p.Key, p => MeanStd.Of(p.Value).Mean);
    }
}
