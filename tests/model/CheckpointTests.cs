using Medformer.Runtime;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Model;

public sealed class CheckpointTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-checkpoint-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly LatentKey[] Keys = [new("chest", "ct", "classification"), new("brain", "mri", "segmentation")];

    [Fact]
    public void SaveLoadGivesTheSameOutputs()
    {
        using var model = new MedformerModel(MedformerConfig.Tiny);
        model.eval();
        string dir = Path.Combine(root, "tiny");
        Checkpoint.Save(model, dir);
        Assert.True(File.Exists(Path.Combine(dir, "config.json")));
        Assert.True(File.Exists(Path.Combine(dir, "model.safetensors")));
        using var loaded = Checkpoint.Load(dir);
        loaded.eval();
        Assert.Equal(MedformerConfig.Tiny.ToJson(), loaded.Config.ToJson());
        using var scope = NewDisposeScope();
        var x = randn(2, 1, 16, 16);
        Assert.Equal(model.forward(x, Keys).data<float>().ToArray(), loaded.forward(x, Keys).data<float>().ToArray());
    }

    [Fact]
    public void CheckpointWithFewerBanksLoadsIntoALargerVocabulary()
    {
        var small = MedformerConfig.Tiny with { Organs = ["chest", "brain", "other"] };
        using var model = new MedformerModel(small);
        string dir = Path.Combine(root, "subset");
        Checkpoint.Save(model, dir);

        var larger = small with { Organs = ["chest", "brain", "liver", "other"], Tasks = [.. small.Tasks, "detection"] };
        using var bigger = new MedformerModel(larger);
        var added = Checkpoint.LoadWeights(bigger, dir);
        Assert.Equal(["latents.organ.liver", "latents.task.detection"], added.Order());
        using var scope = NewDisposeScope();
        model.eval();
        bigger.eval();
        var x = randn(2, 1, 16, 16);
        Assert.True(model.forward(x, Keys).allclose(bigger.forward(x, Keys)));
    }

    [Fact]
    public void ACheckpointOfAnotherModelIsRefused()
    {
        using var model = new MedformerModel(MedformerConfig.Tiny);
        string dir = Path.Combine(root, "tiny");
        Checkpoint.Save(model, dir);
        using var wider = new MedformerModel(MedformerConfig.Tiny with { Dim = 32, SelfAttentionHeads = 4, DecoderHeads = 4 });
        var e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(wider, dir));
        Assert.Contains("in the checkpoint but", e.Message);
        Assert.Contains(dir, e.Message);

        using var deeper = new MedformerModel(MedformerConfig.Tiny with { Depth = 3 });
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(deeper, dir));
        Assert.Contains("blocks.2.", e.Message);
        Assert.StartsWith(Path.Combine(dir, "model.safetensors") + ": cannot load into the model: missing key(s) 'blocks.2.", e.Message);

        using var shallower = new MedformerModel(MedformerConfig.Tiny with { Depth = 1 });
        e = Assert.Throws<InvalidDataException>(() => Checkpoint.LoadWeights(shallower, dir));
        Assert.StartsWith(Path.Combine(dir, "model.safetensors") + ": cannot load into the model: unexpected key(s) 'blocks.1.", e.Message);

        e = Assert.Throws<InvalidDataException>(() => Checkpoint.Load(root));
        Assert.Contains("no config.json", e.Message);
    }

    [Fact]
    public void OverwritingReplacesTheWholeFolderAndLeavesNoStaging()
    {
        string dir = Path.Combine(root, "ckpt");
        using (var first = new MedformerModel(MedformerConfig.Tiny)) Checkpoint.Save(first, dir);
        File.WriteAllText(Path.Combine(dir, "stale.txt"), "from the old checkpoint");
        using var second = new MedformerModel(MedformerConfig.Tiny with { Depth = 1 });
        Checkpoint.Save(second, dir);
        Assert.False(File.Exists(Path.Combine(dir, "stale.txt")));
        Assert.Equal(1, Checkpoint.ReadConfig(dir).Depth);
        Assert.Equal(["ckpt"], Directory.EnumerateFileSystemEntries(root).Select(p => Path.GetFileName(p)!).ToArray());
    }

    [Fact]
    public void AFailedSaveLeavesTheOldCheckpoint()
    {
        string dir = Path.Combine(root, "ckpt");
        using (var first = new MedformerModel(MedformerConfig.Tiny)) Checkpoint.Save(first, dir);
        Assert.Throws<IOException>(() => AtomicDirectory.Write(dir, staging =>
        {
            File.WriteAllText(Path.Combine(staging, "config.json"), "{}");
            throw new IOException("disk full");
        }));
        Assert.Equal(MedformerConfig.Tiny.Depth, Checkpoint.ReadConfig(dir).Depth);
        Assert.Single(Directory.EnumerateFileSystemEntries(root));
    }

    [Fact]
    public void ConfigJsonIsValidatedAndNamesTheFile()
    {
        string file = Path.Combine(root, "config.json");
        File.WriteAllText(file, "{\"dim\": 30, \"self_attention_heads\": 8}");
        var e = Assert.Throws<InvalidDataException>(() => MedformerConfig.Load(file));
        Assert.Contains(file, e.Message);
        Assert.Contains("not divisible by self_attention_heads 8", e.Message);
        File.WriteAllText(file, "{\"dimm\": 64}");
        e = Assert.Throws<InvalidDataException>(() => MedformerConfig.Load(file));
        Assert.Contains("dimm", e.Message);
    }
}
