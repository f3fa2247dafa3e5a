using Medformer.Datasets.Loading;
using TorchSharp;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Eval;

/// <summary>How a linear probe did: accuracy on the data it was fitted to and on held-out data.</summary>
public sealed record ProbeResult(double TrainAccuracy, double TestAccuracy, int Classes, long TrainCount, long TestCount);

/// <summary>
/// The linear probe, the standard test of a frozen representation: the encoder's latents, averaged over the latent
/// axis or flattened, become features; a multinomial logistic regression (standardised features, L2-regularised,
/// full-batch, deterministic) is fitted on the training set and scored on the test set.
/// </summary>
public static class LinearProbe
{
    /// <summary>
    /// The latents of every batch of <paramref name="batches"/> with the model frozen, mean-pooled [N,d] or laid side by
    /// side [N,L·d] (<paramref name="flatten"/>: each latent is a learned slot, so the flat array keeps what the mean
    /// averages away), fp32 on the CPU, and the labels [N].
    /// </summary>
    public static (Tensor Features, Tensor Labels) Features(MedformerModel model, IEnumerable<Batch> batches, string task = "classification",
        Func<Tensor, Tensor>? cast = null, bool flatten = false)
    {
        var features = new List<Tensor>();
        var labels = new List<long>();
        bool training = model.training;
        model.eval();
        try
        {
            using (torch.no_grad())
                foreach (var batch in batches)
                    using (batch)
                    {
                        using var scope = NewDisposeScope();
                        var keys = batch.Metas.Select(m => new LatentKey(m.Organ, m.Modality, task)).ToList();
                        var device = model.parameters().First().device;
                        var images = batch.Images.to(device);
                        var latents = model.forward(cast is null ? images : cast(images), keys);
                        features.Add(scope.MoveToOuter((flatten ? latents.flatten(1) : latents.mean([1])).to(ScalarType.Float32).cpu()));
                        foreach (var meta in batch.Metas)
                            labels.Add(meta.Labels.Length == 1 ? meta.Labels[0] :
                                throw new ArgumentException($"{meta}: the linear probe needs one class label per sample, not {meta.Labels.Length}"));
                    }
        }
        finally
        {
            model.train(training);
        }
        if (features.Count == 0) throw new ArgumentException("the linear probe got no samples");
        var all = cat(features);
        foreach (var f in features) f.Dispose();
        return (all, tensor(labels.ToArray()));
    }

    /// <summary>Fits on (trainX, trainY), scores on (testX, testY). Classes are 0 … classes−1.</summary>
    public static ProbeResult Fit(Tensor trainX, Tensor trainY, Tensor testX, Tensor testY, int classes, double weightDecay = 1e-3, int steps = 300,
        double lr = 0.05)
    {
        if (trainX.shape[0] != trainY.shape[0] || testX.shape[0] != testY.shape[0])
            throw new ArgumentException("features and labels differ in count");
        using var scope = NewDisposeScope();
        var mean = trainX.mean([0], keepdim: true);
        var std = trainX.std([0], keepdim: true).clamp_min(1e-6);
        var x = (trainX - mean) / std;
        var xt = (testX - mean) / std;
        long d = x.shape[1];
        var weight = new TorchSharp.Modules.Parameter(zeros(d, classes));
        var bias = new TorchSharp.Modules.Parameter(zeros(classes));
        using var optimizer = optim.Adam([weight, bias], lr: lr);
        for (int step = 0; step < steps; step++)
        {
            using var stepScope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = F.cross_entropy(x.mm(weight) + bias, trainY) + weightDecay * weight.pow(2).sum();
            loss.backward();
            optimizer.step();
        }
        using (torch.no_grad())
        {
            double Accuracy(Tensor features, Tensor labels) =>
                (features.mm(weight) + bias).argmax(1).eq(labels).to(ScalarType.Float64).mean().item<double>();
            return new ProbeResult(Accuracy(x, trainY), Accuracy(xt, testY), classes, trainX.shape[0], testX.shape[0]);
        }
    }
}
