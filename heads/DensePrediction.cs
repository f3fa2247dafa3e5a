using Medformer.Datasets;
using Medformer.Datasets.Loading;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Heads;

/// <summary>What the dense heads (segmentation, image-to-image) share: input checks, latent keys, and prediction whole or by sliding windows.</summary>
static class DensePrediction
{
    public static string CheckDimensionality(string dimensionality) => dimensionality is "2d" or "3d"
        ? dimensionality
        : throw new ArgumentException($"dimensionality '{dimensionality}': expected 2d or 3d");

    public static string Describe(string dimensionality) => dimensionality == "3d" ? "3D volumes [C,D,H,W]" : "2D images [C,H,W]";

    /// <summary>A batch of the head's dimensionality, or a clear error naming its first sample.</summary>
    public static void CheckBatch(Batch batch, string dimensionality, string what)
    {
        string actual = batch.Images.dim() == 5 ? "3d" : "2d";
        if (actual != dimensionality)
            throw new ArgumentException($"{batch.Metas[0]}: the {what} head takes {Describe(dimensionality)}; this sample is {(actual == "3d" ? "3D" : "2D")} [{string.Join(",", batch.Images.shape[1..])}]");
    }

    public static IReadOnlyList<LatentKey> Keys(IReadOnlyList<SampleMeta> metas, string task, Tensor images)
    {
        if (metas.Count != images.shape[0]) throw new ArgumentException($"{metas.Count} metas for {images.shape[0]} images");
        return [.. metas.Select(m => new LatentKey(m.Organ, m.Modality, task))];
    }

    /// <summary>
    /// predict's fp32 CPU outputs [N,K,…] for images [N,C,…], one image at a time in eval mode without gradients:
    /// whole, or by sliding windows of <paramref name="roi"/> when given.
    /// </summary>
    public static Tensor Run(nn.Module network, Medformer model, string dimensionality, Tensor images, IReadOnlyList<SampleMeta> metas, long[]? roi,
        SlidingWindowOptions? options, Func<Tensor, IReadOnlyList<SampleMeta>, Tensor> predict)
    {
        int axes = dimensionality == "3d" ? 3 : 2;
        if (images.dim() != axes + 2)
            throw new ArgumentException($"the head takes {Describe(dimensionality)}, batched [N,…]; got [{string.Join(",", images.shape)}]");
        if (metas.Count != images.shape[0]) throw new ArgumentException($"{metas.Count} metas for {images.shape[0]} images");
        int patch = axes == 2 ? model.Config.PatchSize2d : model.Config.PatchSize3d;
        if (roi is not null && (roi.Length != axes || roi.Any(r => r < patch || r % patch != 0)))
            throw new ArgumentException($"window [{string.Join(",", roi)}]: needs {axes} extents, each a positive multiple of the patch size {patch}");
        bool training = network.training;
        network.eval();
        try
        {
            using var noGrad = torch.no_grad();
            var first = model.parameters().First();
            var outputs = new List<Tensor>();
            for (int i = 0; i < images.shape[0]; i++)
            {
                using var scope = NewDisposeScope();
                var x = images.narrow(0, i, 1).to(first.device).to(first.dtype);
                var meta = metas[i];
                Tensor y;
                if (roi is null)
                {
                    if (x.shape[2..].Any(n => n < patch || n % patch != 0))
                        throw new ArgumentException($"{meta}: [{string.Join(",", x.shape[1..])}] is not a whole number of {patch}-pixel patches along every axis (a size below the patch, or not a multiple of it); predict it with a sliding window (roi), which pads it");
                    y = predict(x, [meta]);
                }
                else
                    y = SlidingWindow.Infer(x, roi, (windows, _) => predict(windows, [.. Enumerable.Repeat(meta, (int)windows.shape[0])]), options);
                outputs.Add(scope.MoveToOuter(y.to(ScalarType.Float32).cpu()));
            }
            var all = cat(outputs);
            foreach (var o in outputs) o.Dispose();
            return all;
        }
        finally
        {
            network.train(training);
        }
    }
}
