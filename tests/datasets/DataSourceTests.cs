using Medformer.Datasets.Corpora;
using Medformer.Eval;
using Xunit;

namespace Medformer.Tests.Datasets;

/// <summary>One grammar for data, whichever command reads it.</summary>
public sealed class DataSourceTests
{
    [Theory]
    [InlineData("phantom", DataKind.Phantom, "2d")]
    [InlineData("phantom:3d", DataKind.Phantom, "3d")]
    [InlineData("pathmnist", DataKind.MedMnist, "pathmnist")]
    [InlineData("medmnist:organamnist", DataKind.MedMnist, "organamnist")]
    [InlineData("data/x.npz", DataKind.MedMnist, "data/x.npz")]
    [InlineData("npz:data/y.npz", DataKind.MedMnist, "data/y.npz")]
    [InlineData("mnist:/usr/share/datasets/fashion-mnist", DataKind.Mnist, "/usr/share/datasets/fashion-mnist")]
    [InlineData("msd:data/Task09_Spleen", DataKind.Msd, "data/Task09_Spleen")]
    [InlineData("petct:data/studies", DataKind.PetCt, "data/studies")]
    public void EachFormNamesItsKindAndSource(string text, DataKind kind, string source)
    {
        var parsed = DataSource.Parse(text);
        Assert.Equal((kind, source), (parsed.Kind, parsed.Source));
    }

    [Fact]
    public void ExposuresAreWholeSecondsAndErrorsNameTheArgument()
    {
        Assert.Equal((30, 120), (DataSource.Parse("petct:s:30:120").InputSeconds, DataSource.Parse("petct:s:30:120").TargetSeconds));
        Assert.Contains("--task 'petct:s:6x:90': '6x' is not an exposure", Assert.Throws<ArgumentException>(() => DataSource.Parse("petct:s:6x:90")).Message);
        Assert.Contains("phantom:2d or phantom:3d", Assert.Throws<ArgumentException>(() => DataSource.Parse("phantom:4d")).Message);
        var unknown = Assert.Throws<ArgumentException>(() => DataSource.Parse("nosuchset", argument: "corpora[0]")).Message;
        Assert.StartsWith("corpora[0] 'nosuchset': expected phantom", unknown);
    }

    [Theory]
    [InlineData(new[] { "phantom", "3d" }, "phantom:3d")]
    [InlineData(new[] { "medmnist", "pathmnist" }, "medmnist:pathmnist")]
    [InlineData(new[] { "msd:data/Task09_Spleen" }, "msd:data/Task09_Spleen")]
    public void EvaluateTakesWordsOrTheOneArgumentForm(string[] words, string text) =>
        Assert.Equal(DataSource.Parse(text), EvaluationJob.Source(words));

    [Fact]
    public void PhantomSplitsOpenAsFineTuningUsesThem()
    {
        using var splits = DataSource.Parse("phantom").OpenSplits();
        Assert.Equal((4_000L, 500L, 1_000L), (splits.Train.Count, splits.Validation!.Count, splits.Test.Count));
        Assert.Same(splits.Train, splits.Source);
    }
}
