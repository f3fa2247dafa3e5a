using Medformer.Datasets.Loading;
using Medformer.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Medformer.Training;

/// <summary>What one adaptive step did: the batch's mean loss and parts, its size, and the selected size per layer.</summary>
internal sealed record AdaptiveStepResult(double Loss, IReadOnlyDictionary<string, double> Parts, int Count, IReadOnlyList<int> Selected);

/// <summary>
/// The gradients of one step under batch adaptation. DBA (scope full): one backward per sample gives every layer's
/// per-sample gradients; each layer (a module's directly owned parameters) selects its own subset and gets that
/// subset's mean gradient. EDBA (scope last_layer): forward hooks keep the last layers' inputs and outputs, one
/// backward to the outputs gives each sample's output gradient, a batched outer product gives the per-sample weight
/// gradients; the chosen subset's mean loss is then back-propagated through the whole model once.
/// </summary>
internal sealed class AdaptiveStep : IDisposable
{
    readonly BatchAdaptation adaptation;
    readonly TrainingModule task;
    readonly List<Action> unhook = [];
    readonly List<(Linear Layer, Tensor Input, Tensor Output)> captured = [];
    readonly (string Name, Parameter[] Parameters)[] layers;
    bool capturing;

    public AdaptiveStep(BatchAdaptation adaptation, TrainingModule task)
    {
        this.adaptation = adaptation;
        this.task = task;
        if (task.NoPerSampleLoss is { } why) throw new ArgumentException($"batch_adaptation: {why}");
        if (adaptation.Options.Scope == AdaptationScope.LastLayer)
        {
            var last = task.LastLayers;
            if (last.Count == 0)
                throw new ArgumentException($"batch_adaptation.scope: last_layer (EDBA) needs the task's last layers, and {task.GetType().Name} names none");
            foreach (var linear in last)
            {
                var handle = linear.register_forward_hook((_, input, output) => Capture(linear, input, output));
                unhook.Add(handle.remove);
            }
            layers = [];
        }
        else
        {
            layers = [.. task.Module.named_parameters().Where(p => p.parameter.requires_grad)
                .GroupBy(p => LayerOf(p.name), p => p.parameter)
                .Select(g => (g.Key, g.ToArray()))];
        }
    }

    /// <summary>"model.encoder.0.attn.q.weight" → "model.encoder.0.attn.q": a module's own parameters form one layer.</summary>
    static string LayerOf(string name) => name.LastIndexOf('.') is var dot and > 0 ? name[..dot] : "";

    Tensor Capture(Linear linear, Tensor input, Tensor output)
    {
        // A forward without gradient (a stop-gradient target, as BrainFuse's consistency computes) has no per-sample gradient to read.
        if (!capturing || !output.requires_grad) return output;
        // The hook's tensors outlive the objectives' dispose scopes; this class disposes them after the step.
        var x = input.detach().DetachFromDisposeScope();
        var y = output.alias().DetachFromDisposeScope();  // returned, so the loss is computed from it and its gradient is the output's
        captured.Add((linear, x, y));
        return y;
    }

    /// <summary>
    /// Computes the per-sample losses of <paramref name="batch"/>, selects, and leaves the step's gradients in the
    /// model's parameters (as <see cref="MixedPrecision.Backward"/> would). <paramref name="random"/> draws the
    /// random candidates.
    /// </summary>
    public AdaptiveStepResult Backward(Batch batch, StepContext context, Generator random, MixedPrecision policy)
    {
        using var scope = NewDisposeScope();
        (Tensor Losses, IReadOnlyDictionary<string, Tensor> Parts) result;
        capturing = adaptation.Options.Scope == AdaptationScope.LastLayer;
        try
        {
            result = task.PerSampleLoss(batch, context) ?? throw new InvalidOperationException($"{task.GetType().Name}.PerSampleLoss gave nothing");
        }
        catch
        {
            Release();
            throw;
        }
        finally
        {
            capturing = false;
        }
        var losses = result.Losses;
        if (losses.dim() != 1 || losses.shape[0] != batch.Count)
        {
            Release();
            throw new InvalidOperationException($"{task.GetType().Name}.PerSampleLoss gave [{string.Join(",", losses.shape)}] for a batch of {batch.Count}");
        }
        try
        {
            var selected = adaptation.Options.Scope == AdaptationScope.LastLayer ? LastLayer(losses, random, policy) : Full(losses, random);
            return new AdaptiveStepResult(losses.mean().item<float>(), result.Parts.ToDictionary(p => p.Key, p => (double)p.Value.mean().item<float>()),
                batch.Count, selected);
        }
        finally
        {
            Release();
        }
    }

    IReadOnlyList<int> LastLayer(Tensor losses, Generator random, MixedPrecision policy)
    {
        if (captured.Count == 0) throw new InvalidOperationException("batch_adaptation (last_layer): none of the task's last layers ran on this batch");
        var outputGrads = autograd.grad([losses.sum()], [.. captured.Select(c => c.Output)], retain_graph: true);
        // A layer used twice in one forward adds its uses' gradients before the Gram matrix (cross terms count).
        var perLayer = new Dictionary<Linear, List<Tensor>>();
        for (int i = 0; i < captured.Count; i++)
        {
            var (layer, input, _) = captured[i];
            var (weight, bias) = BatchAdaptation.LinearGradients(input, outputGrads[i]);
            if (!perLayer.TryGetValue(layer, out var grads))
            {
                perLayer[layer] = [weight, bias];
            }
            else
            {
                grads[0] = grads[0] + weight;
                grads[1] = grads[1] + bias;
            }
        }
        var subset = adaptation.Select(BatchAdaptation.Gram(perLayer.Values.SelectMany(g => g)), random);
        var index = tensor(subset.Select(i => (long)i).ToArray(), device: losses.device);
        policy.Backward(losses.index_select(0, index).mean());
        return [subset.Length];
    }

    IReadOnlyList<int> Full(Tensor losses, Generator random)
    {
        var parameters = layers.SelectMany(l => l.Parameters).ToArray();
        long b = losses.shape[0];
        var perSample = parameters.Select(_ => new Tensor[b]).ToArray();
        var used = new bool[parameters.Length];
        for (long i = 0; i < b; i++)
        {
            var grads = autograd.grad([losses[i]], parameters, retain_graph: true, allow_unused: true);
            for (int p = 0; p < parameters.Length; p++)
            {
                bool defined = grads[p] is { IsInvalid: false };
                used[p] |= defined;
                perSample[p][i] = defined ? grads[p] : zeros_like(parameters[p]);
            }
        }
        var sizes = new List<int>();
        int offset = 0;
        foreach (var (_, owned) in layers)
        {
            int[] indices = [.. Enumerable.Range(offset, owned.Length).Where(p => used[p])];
            offset += owned.Length;
            if (indices.Length == 0) continue;  // not reached by this batch (e.g. a 3D head on 2D images): no gradient, as without DBA
            var stacked = indices.Select(p => stack(perSample[p])).ToArray();                              // [B,…] each
            var subset = adaptation.Select(BatchAdaptation.Gram(stacked), random);
            var index = tensor(subset.Select(i => (long)i).ToArray(), device: losses.device);
            using (torch.no_grad())
                for (int k = 0; k < indices.Length; k++)
                    parameters[indices[k]].grad = stacked[k].index_select(0, index).mean([0]).to(parameters[indices[k]].dtype);
            sizes.Add(subset.Length);
        }
        if (sizes.Count == 0) throw new InvalidOperationException("batch_adaptation: the loss reached no parameter");
        return sizes;
    }

    void Release()
    {
        foreach (var (_, input, output) in captured)
        {
            input.Dispose();
            output.Dispose();
        }
        captured.Clear();
    }

    public void Dispose()
    {
        Release();
        foreach (var remove in unhook) remove();
        unhook.Clear();
    }
}
