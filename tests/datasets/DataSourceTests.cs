using Medformer.Datasets;
using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Eval;
using Medformer.Pretrain;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>One grammar for data, whichever command reads it: KIND:ARGUMENT[,key=value].</summary>
public sealed class DataSourceTests
{
    [Theory]
    [InlineData("phantom", DataKind.Phantom, "2d")]
    [InlineData("phantom:3d", DataKind.Phantom, "3d")]
    [InlineData("pathmnist", DataKind.MedMnist, "pathmnist")]
    [InlineData("medmnist:organamnist", DataKind.MedMnist, "organamnist")]
    [InlineData("data/x.npz", DataKind.MedMnist, "data/x.npz")]
    [InlineData("npz:data/y.npz", DataKind.MedMnist, "data/y.npz")]
    [InlineData("npz:data/a,b.npz", DataKind.MedMnist, "data/a,b.npz")]
    [InlineData("mnist:/usr/share/datasets/fashion-mnist", DataKind.Mnist, "/usr/share/datasets/fashion-mnist")]
    [InlineData("msd:data/Task09_Spleen", DataKind.Msd, "data/Task09_Spleen")]
    [InlineData("petct:data/studies", DataKind.PetCt, "data/studies")]
    public void EachFormNamesItsKindAndSource(string text, DataKind kind, string source)
    {
        var parsed = DataSource.Parse(text);
        Assert.Equal((kind, source), (parsed.Kind, parsed.Source));
    }

    [Theory]
    [InlineData("phantom:2d,size=16")]
    [InlineData("medmnist:pathmnist,size=64")]
    [InlineData("npz:data/mine.npz,subset=pathmnist")]
    [InlineData("mnist:/usr/share/datasets/fashion-mnist")]
    [InlineData("msd:data/Task09_Spleen")]
    [InlineData("petct:data/studies,in=30,out=120")]
    public void SettingsFollowTheArgumentAndReadBackAsWritten(string text) => Assert.Equal(text, DataSource.Parse(text).ToString());

    [Fact]
    public void SettingsSetSizeSubsetAndExposures()
    {
        Assert.Equal(64, DataSource.Parse("medmnist:pathmnist,size=64").Size);
        Assert.Equal(16, DataSource.Parse("phantom:2d", size: 16).Size);
        Assert.Equal("pathmnist", DataSource.Parse("npz:mine.npz,subset=pathmnist").SubsetInfo()!.Name);
        Assert.Null(DataSource.Parse("npz:mine.npz").SubsetInfo());
        Assert.Equal((30, 120), (DataSource.Parse("petct:s,in=30,out=120").InputSeconds, DataSource.Parse("petct:s,in=30,out=120").TargetSeconds));
        // The older petct:FOLDER:IN:OUT still reads.
        Assert.Equal(DataSource.Parse("petct:s,in=30,out=120"), DataSource.Parse("petct:s:30:120"));
    }

    [Theory]
    [InlineData("nosuchset", "'nosuchset' is no kind of data nor a MedMNIST subset (the kinds are phantom, medmnist, npz, mnist, msd, petct)")]
    [InlineData("nifti:scan.nii", "unknown kind 'nifti' (the kinds are phantom, medmnist, npz, mnist, msd, petct)")]
    [InlineData("phantom:4d", "the phantom is phantom:2d or phantom:3d")]
    [InlineData("petct", "petct needs its argument")]
    [InlineData("npz:data/mine.npz,subset=nosuch", "subset=nosuch is not a MedMNIST subset (")]
    [InlineData("npz:data/mine.npz,size=64", "npz has no setting 'size' (it has subset)")]
    [InlineData("msd:x,subset=pathmnist", "msd takes no settings (not 'subset')")]
    [InlineData("npz:data/folder", "npz takes a .npz file")]
    [InlineData("petct:s,in=6x", "in=6x: '6x' is not an exposure in whole seconds")]
    [InlineData("medmnist:pathmnist,size=64,size=28", "'size' is given twice")]
    public void ErrorsAreOneLineNamingTheFlagAndTheGrammar(string text, string expected)
    {
        string message = Assert.Throws<ArgumentException>(() => DataSource.Parse(text, argument: "--task")).Message;
        Assert.StartsWith($"--task '{text}': ", message);
        Assert.Contains(expected, message);
        Assert.EndsWith(DataSource.Grammar, message);
        Assert.DoesNotContain('\n', message);
    }

    [Fact]
    public void SizeFromTheFlagAndFromTheSpecMustAgree() =>
        Assert.Contains("size=64 and --size 28 disagree", Assert.Throws<ArgumentException>(() => DataSource.Parse("medmnist:pathmnist,size=64",
            size: 28)).Message);

    [Theory]
    [InlineData(new[] { "phantom", "3d" }, "phantom:3d")]
    [InlineData(new[] { "npz", "data/x.npz" }, "npz:data/x.npz")]
    [InlineData(new[] { "medmnist", "pathmnist" }, "medmnist:pathmnist")]
    public void EvaluatesOlderTwoWordsStandForTheOneArgument(string[] words, string text) => Assert.Equal(text, EvaluationJob.FromWords(words));

    [Fact]
    public void OneWordIsAlreadyTheGrammar() => Assert.Null(EvaluationJob.FromWords(["msd:data/Task09_Spleen"]));

    [Fact]
    public void AMissingFileOrFolderIsRefusedBeforeOpening()
    {
        Assert.Contains("--task 'npz:/no/such.npz': /no/such.npz: no such file", Assert.Throws<ArgumentException>(() =>
            DataSource.Parse("npz:/no/such.npz").Check()).Message);
        Assert.Contains("corpora[0].data 'msd:/no/such': /no/such: no such folder",
            Assert.Throws<ArgumentException>(() => DataSource.Parse("msd:/no/such").Check("corpora[0].data")).Message);
    }

    [Fact]
    public void ARunConfigTakesTheSameSpec()
    {
        var config = RunConfig.Parse("corpora:\n  - data: phantom:3d,size=16\n    weight: 2\n  - data: npz:/data/mine.npz,subset=pathmnist", "run.yaml");
        Assert.Equal(DataSource.Parse("phantom:3d,size=16"), config.Corpora[0].Source);
        Assert.Equal(DataSource.Parse("npz:/data/mine.npz,subset=pathmnist"), config.Corpora[1].Source);
        var wrong = Assert.Throws<ArgumentException>(() => RunConfig.Parse("corpora:\n  - data: nifti:x", "run.yaml")).Message;
        Assert.StartsWith("run.yaml: corpora[0].data 'nifti:x': unknown kind 'nifti'", wrong);
    }

    [Fact]
    public void PhantomSplitsOpenAsFineTuningUsesThem()
    {
        using var splits = DataSource.Parse("phantom").OpenSplits();
        Assert.Equal((4_000L, 500L, 1_000L), (splits.Train.Count, splits.Validation!.Count, splits.Test.Count));
        Assert.Same(splits.Train, splits.Source);
    }

    [Fact]
    public void ACustomNpzNamesItsSubsetFromTheSpec()
    {
        // An .npz whose name says nothing: without subset= it cannot be read; with it, its labels are pathmnist's nine tissues.
        string root = Directory.CreateTempSubdirectory("medformer-datasource-").FullName;
        try
        {
            string file = Path.Combine(root, "mine.npz");
            using (var images = randint(0, 255, [6, 28, 28, 3], dtype: ScalarType.Byte))
            using (var labels = tensor(new byte[] { 0, 1, 2, 3, 4, 8 }).reshape(6, 1))
                Npz.Write(file, new Dictionary<string, Tensor> { ["train_images"] = images, ["train_labels"] = labels, ["val_images"] = images,
                    ["val_labels"] = labels, ["test_images"] = images, ["test_labels"] = labels });
            Assert.Contains("names no MedMNIST subset", Assert.ThrowsAny<Exception>(() => DataSource.Parse($"npz:{file}").Open()).Message);
            using var corpus = (MedMnistCorpus)DataSource.Parse($"npz:{file},subset=pathmnist").Open("val");
            Assert.Equal(("pathmnist", 9), (corpus.Subset.Name, corpus.Subset.Labels.Count));
            using var sample = corpus.Get(5);
            Assert.Equal([8L], sample.Meta.Labels);
        }
        finally
        {
            Directory.Delete(root, recursive: true);
        }
    }
}
