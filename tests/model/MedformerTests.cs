using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Model;

public sealed class MedformerTests
{
    static readonly MedformerConfig Tiny = MedformerConfig.Tiny;

    static LatentKey[] Keys(params string[] organs) => organs.Select(o => new LatentKey(o, "ct", "classification")).ToArray();

    [Theory]
    [InlineData(1, 28, 28)]
    [InlineData(3, 64, 32)]
    [InlineData(1, 8, 8)]
    public void Shapes2d(int channels, int height, int width)
    {
        Seeding.SeedEverything(0);
        using var model = new MedformerModel(Tiny);
        using var scope = NewDisposeScope();
        var images = randn(2, channels, height, width);
        var z = model.forward(images, Keys("chest", "brain"));
        Assert.Equal(new long[] { 2, Tiny.LatentCount, Tiny.Dim }, z.shape);
        Assert.Equal(new long[] { 2, height / 4 * (width / 4), Tiny.Dim }, model.Tokenize(images).shape);
    }

    [Theory]
    [InlineData(16, 16, 16)]
    [InlineData(8, 12, 28)]
    public void Shapes3d(int depth, int height, int width)
    {
        using var model = new MedformerModel(Tiny);
        using var scope = NewDisposeScope();
        var volumes = randn([3, 1, depth, height, width]);
        var z = model.forward(volumes, Keys("lung", "kidney", "lung"));
        Assert.Equal(new long[] { 3, Tiny.LatentCount, Tiny.Dim }, z.shape);
    }

    [Fact]
    public void DenseOutputsAtAnotherResolutionAndInChunks()
    {
        using var model = new MedformerModel(Tiny with { QueryChunk = 100 });
        using var scope = NewDisposeScope();
        var z = model.forward(randn(2, 1, 28, 28), Keys("chest", "other"));
        var queries = model.PositionQueries([56, 40]);
        Assert.Equal(new long[] { 1, 56 * 40, Tiny.Dim }, queries.shape);
        var chunked = model.Decode(z, queries);
        Assert.Equal(new long[] { 2, 56 * 40, Tiny.Dim }, chunked.shape);

        using var whole = new MedformerModel(Tiny with { QueryChunk = 1_000_000 });
        whole.load_state_dict(model.state_dict());
        Assert.True(chunked.allclose(whole.Decode(z, queries), rtol: 1e-5, atol: 1e-6));

        var volumeQueries = model.PositionQueries([5, 6, 7]);
        Assert.Equal(new long[] { 2, 210, Tiny.Dim }, model.Decode(z, volumeQueries).shape);
    }

    [Fact]
    public void GradientReachesSelectedBanksOnly()
    {
        using var model = new MedformerModel(Tiny);
        using var scope = NewDisposeScope();
        var keys = new[] { new LatentKey("chest", "xray", "rotation"), new LatentKey("brain", "mri", "rotation"), new LatentKey("unknown-organ", "xray",
            "rotation") };
        var z = model.forward(randn(3, 1, 16, 16), keys);
        (z * randn_like(z)).sum().backward();  // not z², which layer norm makes constant
        var grads = model.named_parameters().ToDictionary(p => p.name, p => p.parameter.grad);
        string[] selected = ["latents.general", "latents.organ.chest", "latents.organ.brain", "latents.organ.other", "latents.modality.xray",
            "latents.modality.mri", "latents.dimensionality.2d", "latents.task.rotation"];
        foreach (string name in selected)
        {
            Assert.True(grads[name] is not null, name + " got no gradient");
            Assert.True(grads[name]!.abs().sum().item<float>() > 0, name + " got a zero gradient");
        }
        foreach (var (name, grad) in grads.Where(g => g.Key.StartsWith("latents.", StringComparison.Ordinal) && !selected.Contains(g.Key)))
            Assert.True(grad is null, name + " was not selected but got a gradient");
        Assert.Null(grads["tokenizer_3d.proj.weight"]);
        Assert.NotNull(grads["tokenizer_2d.proj.weight"]);
    }

    [Fact]
    public void StateDictKeysReadAsPyTorch()
    {
        using var model = new MedformerModel(Tiny);
        var keys = model.state_dict().Keys.ToHashSet();
        string[] expected = ["tokenizer_2d.proj.weight", "tokenizer_2d.pos_proj.bias", "tokenizer_3d.proj.weight", "latents.general",
            "latents.organ.brain", "latents.modality.pathology", "latents.dimensionality.3d", "latents.task.barlow",
            "encoder.ln_q.weight", "encoder.ln_kv.weight", "encoder.attn.q.weight", "encoder.attn.kv.weight", "encoder.attn.proj.weight",
            "encoder.mlp.fc1.weight", "blocks.0.ln_1.weight", "blocks.1.attn.qkv.weight", "blocks.1.mlp.fc2.bias", "ln_f.weight",
            "decoder.attn.q.weight", "query_pos_2d.weight", "query_pos_3d.weight"];
        foreach (string key in expected) Assert.Contains(key, keys);
    }

    [Fact]
    public void BadInputsAreClearErrors()
    {
        using var model = new MedformerModel(Tiny);
        var e = Assert.Throws<ArgumentException>(() => model.forward(zeros(1, 1, 30, 28), Keys("chest")));
        Assert.Contains("multiple of the patch size 4", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.forward(zeros(1, 2, 28, 28), Keys("chest")));
        Assert.Contains("2 channels", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.forward(zeros(28, 28), Keys("chest")));
        Assert.Contains("[B,C,H,W]", e.Message);
        e = Assert.Throws<ArgumentException>(() => model.forward(zeros(2, 1, 28, 28), Keys("chest")));
        Assert.Contains("1 latent keys for a batch of 2", e.Message);
    }

    [Fact]
    public void FourierFeaturesFollowPerceiver()
    {
        using var features = Fourier.GridFeatures([4], bands: 3);  // centres -0.75, -0.25, 0.25, 0.75; f = 1, 1.5, 2
        Assert.Equal(new long[] { 4, 7 }, features.shape);
        Assert.Equal(-0.75f, features[0, 0].item<float>(), 6);
        Assert.Equal(MathF.Sin(MathF.PI * 0.25f * 1.5f), features[2, 2].item<float>(), 5);
        Assert.Equal(MathF.Cos(MathF.PI * 0.75f * 2f), features[3, 6].item<float>(), 5);
    }
}
