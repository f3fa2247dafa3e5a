using System.Text.Json;
using Medformer.Datasets;
using Medformer.Datasets.Loading;
using Medformer.Heads;
using Medformer.Heads.FineTuning;
using Medformer.Runtime;
using TorchSharp;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary>
/// The head twins that <c>bench/run heads</c> times (bench/reference/finetune.py) compute what our heads compute:
/// given the same model, head weights and batch, the same loss and gradients, so the two sides do the same work.
/// </summary>
public sealed class HeadsBenchTwinTests(ITestOutputHelper output)
{
    [Fact]
    public void HeadTwinsComputeOurLossesAndGradients()
    {
        var config = MedformerConfig.Tiny with { QueryChunk = 200 };  // the segmentation read-out decodes 1,024 voxels in chunks
        string dir = Directory.CreateTempSubdirectory("medformer-heads-parity-").FullName;
        try
        {
            Seeding.SeedEverything(5);
            using (var images = rand([4, 1, 16, 16]))
            using (var labels = tensor(new long[] { 0, 3, 1, 4 }))
                Write(Path.Combine(dir, "classification"), config, new ClassificationHead(config, 5), images, labels, "chest", "xray");
            using (var crops = rand([2, 1, 8, 8, 16]))
            using (var maps = randint(0, 3, [2, 8, 8, 16]))
                Write(Path.Combine(dir, "segmentation"), config, new SegmentationHead(config, 3, Dimensionality.Volume), crops, maps, "abdomen", "ct");

            var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "heads_parity.py"), dir]);
            output.WriteLine(result.Stdout + result.Stderr);
            Assert.Equal(0, result.ExitCode);
            using var report = JsonDocument.Parse(result.Stdout);
            foreach (string kind in new[] { "classification", "segmentation" })
            {
                var head = report.RootElement.GetProperty(kind);
                Assert.Empty(head.GetProperty("missing_in_ours").EnumerateArray());
                Assert.Empty(head.GetProperty("extra_in_ours").EnumerateArray());
                Assert.True(head.GetProperty("grads_compared").GetInt32() > 30, $"{kind}: too few gradients compared: {result.Stdout}");
                Assert.True(head.GetProperty("loss_error").GetDouble() < 1e-5, $"{kind}: losses differ: {result.Stdout}");
                Assert.True(head.GetProperty("max_grad_error").GetDouble() < 1e-4, $"{kind}: gradients differ: {result.Stdout}");
            }
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// The model and head (its zero-initialised output layer given random weights, so the loss depends on everything
    /// before it), a batch, our fp32 loss as <see cref="FineTuner"/>'s task computes it, and every gradient.
    /// </summary>
    static void Write(string folder, MedformerConfig config, Head head, Tensor images, Tensor labels, string organ, string modality)
    {
        using var model = new MedformerModel(config);
        using var owned = head;
        using var scope = NewDisposeScope();
        using (torch.no_grad())
            foreach (var layer in head.OutputLayers) layer.weight!.normal_(0, 0.05);
        bool dense = images.dim() == 5;
        var dims = dense ? Dimensionality.Volume : Dimensionality.Image;
        var metas = Enumerable.Range(0, (int)images.shape[0])
            .Select(i => new SampleMeta("parity", $"sample {i}", i, organ, modality, dims, [1, 1, 1], dense ? [] : [labels[i].item<long>()])).ToList();
        using var batch = new Batch(0, [new BatchView(images.alias(), dense ? labels.unsqueeze(1) : null, null)], metas);
        var latents = model.forward(images, [.. metas.Select(m => new LatentKey(m.Organ, m.Modality, head.Task))]);
        var loss = head.Losses(head.call(new HeadInput(model, latents, images.shape, metas, images)), batch).mean();
        loss.backward();

        Checkpoint.Save(model, folder);
        Safetensors.Save(head.state_dict().ToDictionary(p => p.Key, p => p.Value.detach()), Path.Combine(folder, "head.safetensors"));
        var io = new Dictionary<string, Tensor> { ["images"] = images, ["labels"] = labels, ["loss"] = loss.detach() };
        foreach (var (name, parameter) in model.named_parameters())
            if (parameter.grad is { } grad) io["grad.model." + name] = grad;
        foreach (var (name, parameter) in head.named_parameters())
            if (parameter.grad is { } grad) io["grad.head." + name] = grad;
        var meta = new Dictionary<string, string>
        {
            ["classes"] = (head is ClassificationHead c ? c.Classes
                : ((SegmentationHead)head).Classes).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["keys"] = JsonSerializer.Serialize(metas.Select(m => new[] { m.Organ, m.Modality, head.Task })),
        };
        Safetensors.Save(io, Path.Combine(folder, "io.safetensors"), meta);
    }
}
