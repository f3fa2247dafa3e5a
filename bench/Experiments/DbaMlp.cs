using Medformer.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;
using F = TorchSharp.torch.nn.functional;

namespace Medformer.Bench;

/// <summary>
/// The DBA paper's own setting (arXiv:2208.00815: "a network with a single fully connected hidden layer", 1% of
/// MNIST): a 784-H-10 ReLU network on flattened 28×28 images, mean cross-entropy, plain SGD or Adam at a constant
/// learning rate, with or without batch adaptation. A Linear layer's per-sample gradients are outer products of its
/// input and output gradient, so full-scope DBA (one subset per layer, as the paper describes it) needs no
/// per-sample backward: each layer's Gram matrix comes from <see cref="BatchAdaptation.LinearGram"/>, its subset
/// from <see cref="BatchAdaptation.Select(double[,], Generator?)"/>, its step from that subset's mean gradient, and
/// the next batch size from <see cref="BatchAdaptation.Update"/>: the library's selection and rule, our loop.
/// </summary>
internal sealed class DbaMlp : IDisposable
{
    public enum OptimizerKind { Sgd, Adam }

    /// <summary>
    /// Final and best test accuracy (the best over <c>evaluations</c> evenly spaced checks: optimistic, it is picked on
    /// the test set); over the last tenth of the steps, the mean training loss (of the whole batch) and the mean
    /// selected size (all layers); the fraction of hidden units dead (zero on every test image) at the end.
    /// </summary>
    public sealed record Result(double Accuracy, double BestAccuracy, int? LastBatch, double? MeanSelected, double TrainLoss, double DeadHidden);

    readonly Linear hiddenLayer, outputLayer;

    DbaMlp(int inputs, int hidden, int classes)
    {
        hiddenLayer = nn.Linear(inputs, hidden);
        outputLayer = nn.Linear(hidden, classes);
    }

    Parameter[] Parameters => [hiddenLayer.weight!, hiddenLayer.bias!, outputLayer.weight!, outputLayer.bias!];

    public void Dispose()
    {
        hiddenLayer.Dispose();
        outputLayer.Dispose();
    }

    /// <summary>
    /// Trains on <paramref name="images"/> [N,784] with <paramref name="labels"/> [N] (int64) for
    /// <paramref name="steps"/> steps of <paramref name="batch"/> samples (the adaptation's current size when one is
    /// given), drawn without replacement epoch by epoch; scores on the test tensors. The torch seed must be set by
    /// the caller (it draws the initial weights); <paramref name="seed"/> draws the batches.
    /// </summary>
    public static Result Train(Tensor images, Tensor labels, Tensor testImages, Tensor testLabels, int hidden, OptimizerKind optimizer,
        double learningRate, BatchAdaptationOptions? adaptationOptions, int batch, long steps, int seed, int evaluations = 10)
    {
        using var network = new DbaMlp((int)images.shape[1], hidden, 10);
        var parameters = network.Parameters;
        using torch.optim.Optimizer optim = optimizer == OptimizerKind.Sgd
            ? torch.optim.SGD(parameters, learningRate)
            : torch.optim.Adam(parameters, learningRate);
        var adaptation = adaptationOptions is { Enabled: true } o ? new BatchAdaptation(o) : null;
        using var random = new Generator((ulong)(1000 + seed));
        var batches = new EpochSampler(images.shape[0], random);
        double best = 0, accuracy = 0;
        long evaluateEvery = Math.Max(1, steps / Math.Max(1, evaluations));
        var selectedTail = new List<int>();
        var lossTail = new List<double>();
        long tail = steps - Math.Max(1, steps / 10);
        for (long step = 0; step < steps; step++)
        {
            using var scope = NewDisposeScope();
            var index = batches.Next((int)Math.Min(images.shape[0], adaptation?.CurrentBatch ?? batch));
            var x = images.index_select(0, index);
            var y = labels.index_select(0, index);
            var preActivation = network.hiddenLayer.call(x);
            var activation = F.relu(preActivation);
            var logits = network.outputLayer.call(activation);
            var losses = F.cross_entropy(logits, y, reduction: nn.Reduction.None);
            optim.zero_grad();
            if (adaptation is null)
            {
                losses.mean().backward();
            }
            else
            {
                // Each sample's loss depends on its own row only, so the gradient of the sum at a layer's output is,
                // row by row, each sample's own output gradient.
                var outputGrads = autograd.grad([losses.sum()], [preActivation, logits]);
                int hiddenSelected = Step(adaptation, network.hiddenLayer, x, outputGrads[0], random);
                int outputSelected = Step(adaptation, network.outputLayer, activation.detach(), outputGrads[1], random);
                adaptation.Update([hiddenSelected, outputSelected]);
                if (step >= tail) selectedTail.AddRange([hiddenSelected, outputSelected]);
            }
            optim.step();
            if (step >= tail) lossTail.Add(losses.detach().mean().item<float>());
            if ((step + 1) % evaluateEvery == 0 || step == steps - 1)
            {
                accuracy = network.Accuracy(testImages, testLabels);
                best = Math.Max(best, accuracy);
            }
        }
        return new Result(accuracy, best, adaptation?.CurrentBatch, selectedTail.Count > 0 ? selectedTail.Average() : null, lossTail.Average(),
            network.DeadHidden(testImages));
    }

    /// <summary>
    /// Sample indices drawn without replacement, epoch by epoch: a new permutation when what is left of the current one
    /// is shorter than the batch (the rest is skipped).
    /// </summary>
    sealed class EpochSampler(long count, Generator random)
    {
        readonly long count = count;
        long[] order = [];
        long cursor = count;

        /// <summary>The next <paramref name="size"/> indices (≤ the count), as an int64 tensor.</summary>
        public Tensor Next(int size)
        {
            if (cursor + size > count)
            {
                order = randperm(count, generator: random).data<long>().ToArray();
                cursor = 0;
            }
            var index = tensor(order[(int)cursor..(int)(cursor + size)]);
            cursor += size;
            return index;
        }
    }

    /// <summary>Selects the layer's subset and leaves that subset's mean gradient in its weight and bias; returns the subset's size.</summary>
    static int Step(BatchAdaptation adaptation, Linear layer, Tensor input, Tensor outputGrad, Generator random)
    {
        using var scope = NewDisposeScope();
        var subset = adaptation.Select(BatchAdaptation.ToMatrix(BatchAdaptation.LinearGram(input, outputGrad)), random);
        var index = tensor(subset.Select(i => (long)i).ToArray());
        var dy = outputGrad.index_select(0, index);
        var x = input.index_select(0, index);
        using (torch.no_grad())
        {
            layer.weight!.grad = Runtime.Checked.matmul(dy.t(), x) / subset.Length;
            layer.bias!.grad = dy.mean([0]);
        }
        return subset.Length;
    }

    double DeadHidden(Tensor images)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        return F.relu(hiddenLayer.call(images)).amax([0]).le(0).to(ScalarType.Float64).mean().item<double>();
    }

    double Accuracy(Tensor images, Tensor labels)
    {
        using var noGrad = torch.no_grad();
        using var scope = NewDisposeScope();
        var predicted = outputLayer.call(F.relu(hiddenLayer.call(images))).argmax(1);
        return predicted.eq(labels).sum().item<long>() / (double)images.shape[0];
    }
}
