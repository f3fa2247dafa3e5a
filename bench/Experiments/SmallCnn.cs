using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Loading;
using Medformer.Datasets.Transforms;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Linear = TorchSharp.Modules.Linear;
using Sequential = TorchSharp.Modules.Sequential;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench;

/// <summary>
/// The small CNN that <c>bench/run pays</c> trains from scratch beside Medformer (issue 32's baseline): three 3×3
/// convolutions (32, 64, 128 channels), each with batch norm and ReLU, a 2× max-pool after the first two, a global
/// average, and a linear classifier. 2D for [B,C,H,W], 3D for [B,C,D,H,W]. Its PyTorch twin is bench/reference/cnn.py
/// (same state_dict keys: features.0/4/8 the convolutions, features.1/5/9 the norms, classifier). Batch norm because
/// without it the net under-fitted: 1,000 steps on 143 digits ended at a training loss of 0.61 and 80% on the test
/// split, 10 points under a linear model on the same pixels.
/// </summary>
public sealed class SmallCnn : nn.Module<Tensor, Tensor>
{
    private readonly Sequential features;
    private readonly Linear classifier;

    public SmallCnn(int inChannels, int classes, int spatialAxes = 2) : base(nameof(SmallCnn))
    {
        if (spatialAxes is not (2 or 3)) throw new ArgumentException($"SmallCnn: spatial axes must be 2 or 3, not {spatialAxes}");
        nn.Module<Tensor, Tensor> Conv(long input, long output) => spatialAxes == 2
            ? nn.Conv2d(input, output, kernel_size: 3, padding: 1, bias: false)   // the norm's shift is the bias
            : nn.Conv3d(input, output, kernel_size: 3, padding: 1, bias: false);
        nn.Module<Tensor, Tensor> Norm(long channels) => spatialAxes == 2 ? nn.BatchNorm2d(channels) : nn.BatchNorm3d(channels);
        nn.Module<Tensor, Tensor> Pool() => spatialAxes == 2 ? nn.MaxPool2d(kernel_size: 2) : nn.MaxPool3d(kernel_size: 2);
        features = nn.Sequential(Conv(inChannels, 32), Norm(32), nn.ReLU(), Pool(), Conv(32, 64), Norm(64), nn.ReLU(), Pool(), Conv(64, 128), Norm(128),
            nn.ReLU());
        classifier = nn.Linear(128, classes);
        RegisterComponents();
    }

    /// <summary>Images → logits [B,classes].</summary>
    public override Tensor forward(Tensor images)
    {
        using var scope = NewDisposeScope();
        var pooled = features.call(images).flatten(2).mean([2]);   // [B,128]
        return scope.MoveToOuter(classifier.call(pooled));
    }
}

/// <summary>
/// Trains a <see cref="SmallCnn"/> as <c>bench/run pays</c> trains Medformer's head: AdamW, warmup then cosine,
/// batches of labelled images under the fine-tuning augmentation; <see cref="FixMatch"/> continues training with
/// FixMatch's loss over the unlabelled images (weak and strong views from the loader, as <see cref="SemiSupervised.FixMatch"/>).
/// </summary>
public sealed class CnnTrainer(SmallCnn model, FineTuneOptions options)
{
    public SmallCnn Model => model;

    /// <summary>Mean cross-entropy of a labelled batch: what the twin test compares.</summary>
    public static Tensor Loss(SmallCnn model, Tensor images, Tensor labels)
    {
        using var scope = NewDisposeScope();
        return scope.MoveToOuter(F.cross_entropy(model.call(images), labels));
    }

    /// <summary>Supervised training on <paramref name="train"/>'s labels for the options' steps.</summary>
    public void Fit(ICorpus train)
    {
        var loader = new DataLoader([new LoaderSource(train, Transform: options.Augment)], new LoaderOptions(options.BatchSize, options.Seed, Workers: 1));
        Train(loader, options.BatchSize, options.MaxSteps, (batch, step) =>
        {
            using var labels = Labels(batch.Metas);
            return Loss(model, batch.Images, labels);
        });
    }

    /// <summary>
    /// FixMatch for <paramref name="steps"/> over <paramref name="train"/> (labelled) and <paramref name="unlabelled"/>
    /// (its labels hidden): CE on the labelled weak views + λ_u · mean over unlabelled images of 1[max p ≥ τ] · CE(strong
    /// view, argmax p), p the prediction on the weak view without gradient. Returns the last confident share.
    /// </summary>
    public double FixMatch(ICorpus train, ICorpus unlabelled, FixMatchOptions fixMatch, long steps, long[] spatialShape)
    {
        fixMatch.Validate();
        var weak = options.Augment ?? new Compose([]);
        var strong = new Compose([weak, fixMatch.StrongAugment ?? FixMatchOptions.DefaultStrongAugment(spatialShape)]);
        int batchSize = (int)Math.Round(options.BatchSize * (1 + fixMatch.UnlabelledRatio));
        var loader = new DataLoader([
            new LoaderSource(train, 1, ViewTransforms: [weak, weak]),
            new LoaderSource(RelabelledCorpus.WithoutLabels(unlabelled), fixMatch.UnlabelledRatio, ViewTransforms: [weak, strong]),
        ], new LoaderOptions(batchSize, options.Seed + 7919, Workers: 1));
        double confidentShare = 0;
        Train(loader, batchSize, steps, (batch, step) =>
        {
            using var scope = NewDisposeScope();
            long[] labelled = [.. Enumerable.Range(0, batch.Count).Where(i => batch.Metas[i].Labels.Length > 0).Select(i => (long)i)];
            long[] hidden = [.. Enumerable.Range(0, batch.Count).Where(i => batch.Metas[i].Labels.Length == 0).Select(i => (long)i)];
            var loss = zeros(1).squeeze();
            if (labelled.Length > 0)
            {
                var labels = Labels([.. labelled.Select(i => batch.Metas[(int)i])]);
                loss = loss + F.cross_entropy(model.call(batch.Views[0].Images.index_select(0, tensor(labelled))), labels);
            }
            if (hidden.Length > 0)
            {
                Tensor top, classes;
                using (no_grad())
                    (top, classes) = F.softmax(model.call(batch.Views[0].Images.index_select(0, tensor(hidden))), 1).max(1);
                var confident = top.ge(fixMatch.Threshold).to(ScalarType.Float32);
                var unsupervised = F.cross_entropy(model.call(batch.Views[1].Images.index_select(0, tensor(hidden))), classes, reduction: nn.Reduction.None);
                loss = loss + fixMatch.Weight * (unsupervised * confident).mean();
                confidentShare = confident.mean().item<float>();
            }
            return scope.MoveToOuter(loss);
        });
        return confidentShare;
    }

    void Train(DataLoader loader, int batchSize, long steps, Func<Batch, long, Tensor> loss)
    {
        model.train();
        using var optimizer = optim.AdamW(model.parameters(), lr: options.LearningRate, weight_decay: options.WeightDecay);
        long warmup = Math.Min(options.WarmupSteps, steps / 5);
        long step = 0;
        foreach (var batch in loader.Batches())
        {
            using (batch)
            using (var scope = NewDisposeScope())
            {
                double rate = step < warmup
                    ? options.LearningRate * (step + 1) / warmup
                    : options.LearningRate * 0.5 * (1 + Math.Cos(Math.PI * (step - warmup) / Math.Max(1, steps - warmup)));
                foreach (var group in optimizer.ParamGroups) group.LearningRate = rate;
                optimizer.zero_grad();
                var value = loss(batch, step);
                value.backward();
                if (options.GradClip > 0) nn.utils.clip_grad_norm_(model.parameters(), options.GradClip);
                optimizer.step();
                if (options.LogEvery > 0 && (step + 1) % options.LogEvery == 0)
                    Console.WriteLine($"  cnn step {step + 1}/{steps} loss {value.item<float>():F4}");
            }
            if (++step >= steps) break;
        }
        model.eval();
    }

    /// <summary>Accuracy on images [N,C,…] and labels [N], in chunks of 500.</summary>
    public double Accuracy(Tensor images, Tensor labels)
    {
        model.eval();
        using var noGrad = no_grad();
        long correct = 0;
        for (long start = 0; start < images.shape[0]; start += 500)
        {
            using var scope = NewDisposeScope();
            long count = Math.Min(500, images.shape[0] - start);
            var predicted = model.call(images.narrow(0, start, count)).argmax(1);
            correct += predicted.eq(labels.narrow(0, start, count)).sum().item<long>();
        }
        return (double)correct / images.shape[0];
    }

    static Tensor Labels(IReadOnlyList<SampleMeta> metas) => tensor(metas.Select(m => m.Labels[0]).ToArray());
}
