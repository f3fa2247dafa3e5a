using Medformer.Datasets.Loading;
using Medformer.Pretrain.Objectives;
using Medformer.Pretrain.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Heads;

/// <summary>How the latent array [B,N,d] becomes one vector per sample for a classifier.</summary>
public enum Pooling
{
    /// <summary>The latents laid side by side [B,N·d]: each latent is a learned slot, so their order carries meaning.</summary>
    Flatten,
    /// <summary>The mean over latents [B,d].</summary>
    Mean,
    /// <summary>A learned query reads the latents (Perceiver IO's decoder) [B,d].</summary>
    Query,
}

/// <summary>
/// Multi-class classification by fine-tuning a Medformer through the shared <see cref="Trainer"/>: the latents,
/// pooled, then LayerNorm and a linear layer (zero-initialised, so training starts at the uniform prediction).
/// The model's weights train unless <c>freezeEncoder</c> (a linear probe trained by SGD). Samples select the
/// "classification" task bank. Per-sample losses are exposed, so batch adaptation (DBA/EDBA) applies.
/// </summary>
public sealed class ClassificationTask : TrainingTask
{
    private readonly Network network;
    private readonly int classes;

    public ClassificationTask(Medformer model, int classes, Pooling pooling = Pooling.Flatten, bool freezeEncoder = false)
    {
        if (classes < 2) throw new ArgumentException($"classes {classes} must be at least 2");
        this.classes = classes;
        network = new Network(model, classes, pooling);
        if (freezeEncoder)
            foreach (var p in model.parameters()) p.requires_grad = false;
    }

    public override nn.Module Module => network;

    public override Medformer Model => network.Model;

    public int Classes => classes;

    public override string? NoPerSampleLoss => null;

    public override IReadOnlyList<Linear> LastLayers => [network.fc];

    public override (Tensor Loss, IReadOnlyDictionary<string, Tensor> Parts) Loss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var loss = F.cross_entropy(network.Logits(step.Cast(batch.Images), batch.Metas), Labels(batch));
        return (scope.MoveToOuter(loss), new Dictionary<string, Tensor>());
    }

    public override (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts)? PerSampleLoss(Batch batch, StepContext step)
    {
        using var scope = NewDisposeScope();
        var losses = F.cross_entropy(network.Logits(step.Cast(batch.Images), batch.Metas), Labels(batch), reduction: nn.Reduction.None);
        return (scope.MoveToOuter(losses), new Dictionary<string, Tensor>());
    }

    /// <summary>Class probabilities [N,classes] (fp32, CPU) for images [N,C,…] with their metas, in eval mode, chunked.</summary>
    public Tensor PredictProbabilities(Tensor images, IReadOnlyList<Datasets.SampleMeta> metas, int chunk = 500)
    {
        bool training = network.training;
        network.eval();
        try
        {
            using var noGrad = torch.no_grad();
            var parts = new List<Tensor>();
            var device = Model.parameters().First().device;
            var dtype = Model.parameters().First().dtype;
            for (long start = 0; start < images.shape[0]; start += chunk)
            {
                using var scope = NewDisposeScope();
                long count = Math.Min(chunk, images.shape[0] - start);
                var x = images.narrow(0, start, count).to(device).to(dtype);
                var logits = network.Logits(x, metas.Skip((int)start).Take((int)count).ToList());
                parts.Add(scope.MoveToOuter(logits.softmax(1).to(ScalarType.Float32).cpu()));
            }
            var all = cat(parts);
            foreach (var p in parts) p.Dispose();
            return all;
        }
        finally
        {
            network.train(training);
        }
    }

    Tensor Labels(Batch batch) => tensor(batch.Metas.Select(m =>
    {
        if (m.Labels.Length != 1) throw new ArgumentException($"{m}: classification needs one class label per sample, not {m.Labels.Length}");
        long label = m.Labels[0];
        if (label < 0 || label >= classes) throw new ArgumentException($"{m}: label {label} is outside the head's {classes} classes");
        return label;
    }).ToArray(), device: Model.parameters().First().device);

    public override void Dispose() => network.Dispose();

    /// <summary>The trainable module: "model" (the Medformer, as checkpoints expect) and the head.</summary>
    sealed class Network : nn.Module
    {
        private readonly Medformer model;
        private readonly Pooler? pool;
        private readonly LayerNorm norm;
        internal readonly Linear fc;
        private readonly Pooling pooling;

        public Network(Medformer model, int classes, Pooling pooling) : base("Classification")
        {
            this.model = model;
            this.pooling = pooling;
            int width = pooling == Pooling.Flatten ? model.Config.Dim * model.Config.LatentCount : model.Config.Dim;
            if (pooling == Pooling.Query) pool = new Pooler(model.Config.Dim);
            norm = nn.LayerNorm(width);
            fc = nn.Linear(width, classes);
            using (torch.no_grad())
            {
                nn.init.zeros_(fc.weight!);
                nn.init.zeros_(fc.bias!);
            }
            RegisterComponents();
        }

        public Medformer Model => model;

        /// <summary>images [B,C,…] → fp32 logits [B,classes].</summary>
        public Tensor Logits(Tensor images, IReadOnlyList<Datasets.SampleMeta> metas)
        {
            using var scope = NewDisposeScope();
            var keys = metas.Select(m => new LatentKey(m.Organ, m.Modality, "classification")).ToList();
            var latents = model.forward(images, keys);                                   // [B,N,d]
            var pooled = pooling switch
            {
                Pooling.Flatten => latents.flatten(1),                                   // [B,N·d]
                Pooling.Mean => latents.mean([1]),                                       // [B,d]
                _ => pool!.call(model, latents),                                         // [B,d]
            };
            return scope.MoveToOuter(fc.call(norm.call(pooled)).to(ScalarType.Float32));
        }
    }
}
