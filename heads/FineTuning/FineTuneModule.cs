using System.Text.Json.Nodes;
using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Training;
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Heads.FineTuning;

/// <summary>
/// A Medformer and a head as one <see cref="TrainingModule"/> for the shared <see cref="Trainer"/>: samples select the
/// head's task bank, the head reads the latents, its per-sample losses make the loss (so DBA/EDBA apply), the
/// strategy freezes and scales the model's parameters, and the final model folder carries the head
/// (head.safetensors + head.json) beside the model.
/// </summary>
internal sealed class FineTuneModule : TrainingModule
{
    public const string HeadWeightsFile = "head.safetensors";
    public const string HeadFile = "head.json";

    private readonly Network network;
    private readonly Strategy strategy;
    private readonly Func<JsonObject> describe;

    public FineTuneModule(MedformerModel model, Head head, Strategy strategy, Func<JsonObject> describe)
    {
        strategy.Validate(model.Config);
        if (!model.Config.Tasks.Contains(head.Task))
            throw new ArgumentException($"the model has no task bank '{head.Task}' (its tasks: {string.Join(", ", model.Config.Tasks)}); load it with " +
                $"Pretrained.Load(folder, tasks: [\"{head.Task}\"])");
        this.strategy = strategy;
        this.describe = describe;
        network = new Network(model, head);
        foreach (var (name, parameter) in model.named_parameters()) parameter.requires_grad = strategy.Trains(name, model.Config);
    }

    public override nn.Module Module => network;

    public override MedformerModel Model => network.Model;

    public Head Head => network.Head;

    public override string? NoPerSampleLoss => null;

    public override IReadOnlyList<Linear> LastLayers => Head.OutputLayers;

    public override double LearningRateScale(string parameterName) =>
        parameterName.StartsWith("model.", StringComparison.Ordinal) ? strategy.LearningRateScale(parameterName["model.".Length..], Model.Config) : 1;

    public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var (losses, parts) = Losses(batch, step);
        return (scope.MoveToOuter(losses.mean()), Keep(scope, parts));
    }

    public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var (losses, parts) = Losses(batch, step);
        return (scope.MoveToOuter(losses), Keep(scope, parts));
    }

    static IReadOnlyDictionary<string, Tensor> Keep(DisposeScope scope, IReadOnlyDictionary<string, Tensor> parts) =>
        parts.ToDictionary(p => p.Key, p => scope.MoveToOuter(p.Value));

    /// <summary>
    /// Mixup's α (Zhang et al., 2018): each training batch is mixed with a permutation of itself by λ ~ Beta(α, α),
    /// and each sample's loss is λ·(its own label's) + (1 − λ)·(its partner's); 0 turns it off. Heads that read
    /// labels from the metas (classification).
    /// </summary>
    public double Mixup { get; set; }

    /// <summary>BrainFuse's mixes and consistency term while set (training only); see <see cref="BrainFuseMixing"/>.</summary>
    public BrainFuseOptions? BrainFuse { get; set; }

    /// <summary>
    /// FixMatch (Sohn et al., 2020) while set: batches carry two views (weak, strong) and mix labelled samples with
    /// unlabelled ones (no labels in their metas); see <see cref="FixMatchOptions"/>.
    /// </summary>
    public FixMatchOptions? FixMatch { get; set; }

    (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts) Losses(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        if (FixMatch is { } fixMatch && network.training)
        {
            var (fixMatchLosses, parts) = FixMatchLosses(batch, step, fixMatch);
            return (scope.MoveToOuter(fixMatchLosses), Keep(scope, parts));
        }
        if (BrainFuse is { } brainFuse && network.training)
        {
            var (mixedLosses, mixedParts) = BrainFuseMixing.Losses(brainFuse, Head, batch, step, network.Outputs, Device);
            CheckLosses(mixedLosses, batch.Count);
            return (scope.MoveToOuter(mixedLosses), Keep(scope, mixedParts));
        }
        var images = step.Cast(batch.Images.to(Device));
        Tensor losses;
        if (Mixup > 0 && network.training)
        {
            double lambda = SampleBeta(Mixup, step.Generator);
            var partner = randperm(batch.Count, generator: step.Generator);
            var mixed = images * lambda + images.index_select(0, partner.to(images.device)) * (1 - lambda);
            var outputs = network.Outputs(mixed, batch.Metas);
            var partners = batch with { Metas = [.. partner.data<long>().ToArray().Select(i => batch.Metas[(int)i])] };
            losses = Head.Losses(outputs, batch) * lambda + Head.Losses(outputs, partners) * (1 - lambda);
        }
        else
            losses = Head.Losses(network.Outputs(images, batch.Metas), batch);
        CheckLosses(losses, batch.Count);
        return (scope.MoveToOuter(losses.to(ScalarType.Float32)), new Dictionary<string, Tensor>());
    }

    void CheckLosses(Tensor losses, int count)
    {
        if (losses.dim() != 1 || losses.shape[0] != count)
            throw new InvalidOperationException($"{Head.GetType().Name}.Losses gave [{string.Join(",", losses.shape)}], not one loss per sample [{count}]");
    }

    /// <summary>
    /// FixMatch's loss as one loss per sample, in the batch's order, whose mean is FixMatch's
    /// mean over labelled samples of CE(weak view, label) + λ_u · mean over unlabelled samples of
    /// 1[max p ≥ τ] · CE(strong view, argmax p), with p the model's prediction on the weak view (no gradient).
    /// Parts: the two terms and the share of unlabelled samples whose pseudo-label passed the threshold.
    /// </summary>
    (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts) FixMatchLosses(Batch batch, StepContext step, FixMatchOptions fixMatch)
    {
        if (batch.Views.Count != 2)
            throw new InvalidOperationException($"FixMatch needs a weak and a strong view of each sample, the batch has {batch.Views.Count} view(s)");
        using var scope = NewDisposeScope();
        long[] labelled = [.. Enumerable.Range(0, batch.Count).Where(i => batch.Metas[i].Labels.Length > 0).Select(i => (long)i)];
        long[] unlabelled = [.. Enumerable.Range(0, batch.Count).Where(i => batch.Metas[i].Labels.Length == 0).Select(i => (long)i)];
        // Rows picked before they go to the device: labelled images need only their weak view, unlabelled ones both.
        Tensor Rows(int view, long[] rows) => step.Cast(batch.Views[view].Images.index_select(0, tensor(rows)).to(Device));
        var metas = labelled.Select(i => batch.Metas[(int)i]).ToList();
        var inputs = new List<Tensor>();
        if (labelled.Length > 0) inputs.Add(Rows(0, labelled));
        Tensor confident = zeros(0, dtype: ScalarType.Bool, device: Device);
        if (unlabelled.Length > 0)
        {
            var unlabelledMetas = unlabelled.Select(i => batch.Metas[(int)i]).ToList();
            Tensor top, classes;
            using (no_grad())
            {
                using var probabilities = Head.Predict(network.Outputs(Rows(0, unlabelled), unlabelledMetas)).to(ScalarType.Float32);
                (top, classes) = probabilities.max(1);
            }
            confident = top.ge(fixMatch.Threshold);
            metas.AddRange(unlabelledMetas.Zip(classes.cpu().data<long>().ToArray(), (m, c) => m with { Labels = [c] }));
            inputs.Add(Rows(1, unlabelled));
        }
        // Labelled weak views and unlabelled strong ones in one forward pass: every layer works per sample.
        var outputs = network.Outputs(cat(inputs), metas);
        var losses = Head.Losses(outputs, batch with { Metas = metas }).to(ScalarType.Float32);
        CheckLosses(losses, batch.Count);
        // Weights that make the batch mean FixMatch's two means: B/n_l for labelled samples, λ_u·B/n_u (confident only) for unlabelled ones.
        var weights = cat([
            full(labelled.Length, labelled.Length == 0 ? 0.0 : (double)batch.Count / labelled.Length, dtype: ScalarType.Float32, device: Device),
            confident.to(ScalarType.Float32) * (unlabelled.Length == 0 ? 0.0 : fixMatch.Weight * batch.Count / unlabelled.Length)]);
        var weighted = losses * weights;
        var ordered = zeros(batch.Count, dtype: ScalarType.Float32, device: Device).index_copy(0, tensor(labelled.Concat(unlabelled).ToArray(), device: Device),
            weighted);
        // A batch may draw no labelled or no unlabelled sample: its term is then 0, not the NaN of an empty mean.
        Tensor Mean(Tensor values) => values.numel() == 0 ? zeros(1, device: Device).sum() : values.mean();
        var parts = new Dictionary<string, Tensor>
        {
            ["supervised"] = Mean(losses.narrow(0, 0, labelled.Length)),
            ["unsupervised"] = Mean(losses.narrow(0, labelled.Length, unlabelled.Length) * confident),
            ["pseudo_label_rate"] = Mean(confident.to(ScalarType.Float32)),
        };
        return (scope.MoveToOuter(ordered), Keep(scope, parts));
    }

    /// <summary>
    /// Beta(α, α) as X / (X + Y) with X, Y ~ Gamma(α), from the step's generator (so a resumed run draws the same λ).
    /// </summary>
    internal static double SampleBeta(double alpha, Generator generator)
    {
        double x = SampleGamma(alpha, generator), y = SampleGamma(alpha, generator);
        return x + y > 0 ? x / (x + y) : 0.5;
    }

    /// <summary>
    /// Gamma(α, 1) by Marsaglia and Tsang's method (2000); below α = 1 as Gamma(α + 1)·U^(1/α).
    /// </summary>
    static double SampleGamma(double alpha, Generator generator)
    {
        double Uniform()
        {
            using var u = rand(1, dtype: ScalarType.Float64, generator: generator);
            return u.item<double>();
        }
        if (alpha < 1) return SampleGamma(alpha + 1, generator) * Math.Pow(Uniform(), 1 / alpha);
        double d = alpha - 1.0 / 3, c = 1 / Math.Sqrt(9 * d);
        while (true)
        {
            double z;
            using (var normal = randn(1, dtype: ScalarType.Float64, generator: generator))
                z = normal.item<double>();
            double v = Math.Pow(1 + c * z, 3);
            if (v <= 0) continue;
            if (Math.Log(Uniform()) < 0.5 * z * z + d - d * v + d * Math.Log(v)) return d * v;
        }
    }

    /// <summary>
    /// The decay of an exponential moving average of the trainable weights (timm's ModelEma; FixMatch evaluates
    /// with 0.999), 0 for none. Its fp32 shadows start at the weights, follow them after each step with the decay
    /// warmed up as min(decay, (1 + step)/(10 + step)) (TensorFlow's ExponentialMovingAverage), and go into
    /// checkpoints (ema.safetensors) so a resumed run averages the same.
    /// </summary>
    public double Ema { get; set; }

    List<(string Name, Tensor Parameter, Tensor Shadow)>? averages;

    public const string EmaFile = "ema.safetensors";

    public override void Prepare(ScalarType computeType, Device device)
    {
        ReleaseAverages();
        if (Ema <= 0) return;
        using var noGrad = no_grad();
        averages = [.. network.named_parameters().Where(p => p.parameter.requires_grad)
            .Select(p => (p.name, (Tensor)p.parameter, p.parameter.detach().to(ScalarType.Float32).clone()))];
    }

    public override void AfterStep(long step, long maxSteps)
    {
        if (averages is null) return;
        double decay = Math.Min(Ema, (1.0 + step) / (10.0 + step));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        foreach (var (_, parameter, shadow) in averages) shadow.mul_(decay).add_(parameter.detach().to(ScalarType.Float32), alpha: 1 - decay);
    }

    public override IReadOnlyDictionary<string, IReadOnlyDictionary<string, Tensor>> ExtraState() => averages is null
        ? new Dictionary<string, IReadOnlyDictionary<string, Tensor>>()
        : new Dictionary<string, IReadOnlyDictionary<string, Tensor>> { [EmaFile] = averages.ToDictionary(a => a.Name, a => a.Shadow) };

    public override void LoadExtraState(string file, IReadOnlyDictionary<string, Tensor> tensors, string source)
    {
        if (file != EmaFile || averages is null) return;
        using var noGrad = no_grad();
        foreach (var (name, _, shadow) in averages)
        {
            if (!tensors.TryGetValue(name, out var value)) throw new InvalidDataException($"{source}: no averaged weight '{name}'");
            if (!value.shape.SequenceEqual(shadow.shape))
                throw new InvalidDataException($"{source}: '{name}' is [{string.Join(",", value.shape)}], expected [{string.Join(",", shadow.shape)}]");
            shadow.copy_(value);
        }
    }

    /// <summary>The averaged weights in place of the trained ones until disposed (null without an average): what validation scores.</summary>
    public IDisposable? AveragedWeights()
    {
        if (averages is null) return null;
        var trained = averages.Select(a => a.Parameter.detach().clone()).ToList();
        CopyAverages();
        return new Restore(() =>
        {
            using (no_grad())
                for (int i = 0; i < trained.Count; i++) averages[i].Parameter.copy_(trained[i]);
            foreach (var t in trained) t.Dispose();
        });
    }

    /// <summary>Puts the averaged weights into the model and head for good (the end of training).</summary>
    public void CopyAverages()
    {
        if (averages is null) return;
        using var noGrad = no_grad();
        foreach (var (_, parameter, shadow) in averages) parameter.copy_(shadow);
    }

    void ReleaseAverages()
    {
        foreach (var (_, _, shadow) in averages ?? []) shadow.Dispose();
        averages = null;
    }

    sealed class Restore(Action restore) : IDisposable
    {
        public void Dispose() => restore();
    }

    /// <summary>images [B,C,…] (on the model's device and dtype) → the head's raw outputs.</summary>
    public Tensor Outputs(Tensor images, IReadOnlyList<SampleMeta> metas) => network.Outputs(images, metas);

    public Device Device => Model.parameters().First().device;

    public override IReadOnlyDictionary<string, Action<string>> ModelFiles(IReadOnlyDictionary<string, Tensor> otherWeights)
    {
        // The head's weights under its own names: its submodule's name in the network is found, not assumed.
        string prefix = network.named_modules().First(m => ReferenceEquals(m.module, network.Head)).name + ".";
        var head = otherWeights.Where(p => p.Key.StartsWith(prefix, StringComparison.Ordinal)).ToDictionary(p => p.Key[prefix.Length..], p => p.Value);
        return new Dictionary<string, Action<string>>
        {
            [HeadWeightsFile] = path => Safetensors.Save(head, path),
            [HeadFile] = path => File.WriteAllText(path, describe().ToJsonString(new() { WriteIndented = true })),
        };
    }

    public override void Dispose()
    {
        ReleaseAverages();
        network.Dispose();
    }

    /// <summary>The trainable module: "model" (the Medformer, as checkpoints expect) and "head".</summary>
    sealed class Network : nn.Module
    {
        private readonly MedformerModel model;
        private readonly Head head;

        public Network(MedformerModel model, Head head) : base("FineTune")
        {
            this.model = model;
            this.head = head;
            RegisterComponents();
        }

        public MedformerModel Model => model;

        public Head Head => head;

        public Tensor Outputs(Tensor images, IReadOnlyList<SampleMeta> metas)
        {
            if (metas.Count != images.shape[0]) throw new ArgumentException($"{metas.Count} metas for {images.shape[0]} images");
            using var scope = NewDisposeScope();
            var keys = metas.Select(m => new LatentKey(m.Organ, m.Modality, head.Task)).ToList();
            var latents = model.forward(images, keys);                                   // [B,N,d]
            return scope.MoveToOuter(head.call(new HeadInput(model, latents, images.shape, metas, images)));
        }
    }
}
