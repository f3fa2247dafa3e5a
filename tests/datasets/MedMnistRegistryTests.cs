using Medformer.Datasets.Corpora;
using Xunit;
using Medformer.Runtime;

namespace Medformer.Tests.Datasets;

/// <summary>The embedded registry against values read off MedMNIST's info.py (v3.0.2) by hand, and its validation.</summary>
public sealed class MedMnistRegistryTests
{
    static readonly MedMnistRegistry registry = MedMnistRegistry.Embedded;

    [Fact]
    public void HoldsTheTwelve2dAndSix3dSubsets()
    {
        Assert.Equal(
            ["pathmnist", "chestmnist", "dermamnist", "octmnist", "pneumoniamnist", "retinamnist", "breastmnist", "bloodmnist",
             "tissuemnist", "organamnist", "organcmnist", "organsmnist",
             "organmnist3d", "nodulemnist3d", "adrenalmnist3d", "fracturemnist3d", "vesselmnist3d", "synapsemnist3d"],
            registry.Names);
        foreach (var subset in registry.Subsets)
        {
            Assert.Equal(subset.Dimensionality == Dimensionality.Image ? [28, 64, 128, 224] : new[] { 28, 64 }, subset.Sizes);
            Assert.Contains(subset.Organ, Vocabulary.Organs);
            Assert.Contains(subset.Modality, Vocabulary.Modalities);
            Assert.Contains(subset.Task, Vocabulary.Tasks);
            Assert.All(subset.Files.Values, f => Assert.Matches("^https://zenodo.org/records/10519652/files/" + subset.Name + @"(_\d+)?\.npz\?download=1$",
                f.Url));
            Assert.All(subset.Files.Values, f => Assert.Contains($"/{subset.FileName(f.Size)}?", f.Url));
        }
        Assert.Equal(12, registry.Subsets.Count(s => s.Dimensionality == Dimensionality.Image));
        Assert.Equal(60, registry.Subsets.SelectMany(s => s.Files.Values).Select(f => f.Md5).Distinct().Count());
    }

    [Theory]
    [InlineData("pathmnist", 28, "a8b06965200029087d5bd730944a56c1")]
    [InlineData("pathmnist", 224, "2c51a510bcdc9cf8ddb2af93af1eadec")]
    [InlineData("chestmnist", 224, "45bd33e6f06c3e8cdb481c74a89152aa")]
    [InlineData("organsmnist", 28, "9ab87b696fb54e2a387ebe992d6ed5f1")]
    [InlineData("organmnist3d", 64, "58a2205adf14a9d0a189cb06dc78bf10")]
    [InlineData("synapsemnist3d", 28, "1235b78a3cd6280881dd7850a78eadb6")]
    public void ChecksumsAreThePublishedOnes(string name, int size, string md5)
    {
        var file = registry.Get(name).File(size);
        Assert.Equal(md5, file.Md5);
        Assert.Equal(size, file.Size);
    }

    [Fact]
    public void FactsAreThePublishedOnes()
    {
        var path = registry.Get("pathmnist");
        Assert.Equal(("colon", "pathology", 3, "multi-class", 9), (path.Organ, path.Modality, path.Channels, path.Task, path.Labels.Count));
        Assert.Equal("colorectal adenocarcinoma epithelium", path.Labels[8]);
        Assert.Equal((89_996L, 10_004L, 7_180L), (path.Splits["train"], path.Splits["val"], path.Splits["test"]));

        var chest = registry.Get("ChestMNIST");
        Assert.Equal(("chest", "xray", 1, "multi-label", 14), (chest.Organ, chest.Modality, chest.Channels, chest.Task, chest.Labels.Count));
        Assert.Equal("hernia", chest.Labels[13]);

        Assert.Equal("ordinal-regression", registry.Get("retinamnist").Task);
        Assert.Equal(("breast", "ultrasound", "binary-class"), (registry.Get("breastmnist").Organ, registry.Get("breastmnist").Modality,
            registry.Get("breastmnist").Task));
        Assert.Equal(("abdomen", "ct"), (registry.Get("organamnist").Organ, registry.Get("organamnist").Modality));
        Assert.Equal("CC BY-NC 4.0", registry.Get("dermamnist").License);

        var synapse = registry.Get("synapsemnist3d");
        Assert.Equal(("3d", "brain", "microscopy", 1), (synapse.Dimensionality.Name, synapse.Organ, synapse.Modality, synapse.Channels));
        Assert.Equal((1_230L, 177L, 352L), (synapse.Splits["train"], synapse.Splits["val"], synapse.Splits["test"]));
        Assert.Equal(("vessel", "mri"), (registry.Get("vesselmnist3d").Organ, registry.Get("vesselmnist3d").Modality));
        Assert.Equal((13_932L, 2_452L, 8_827L), (registry.Get("organsmnist").Splits["train"], registry.Get("organsmnist").Splits["val"],
            registry.Get("organsmnist").Splits["test"]));
        Assert.Equal("liver", registry.Get("organmnist3d").Labels[0]);
        Assert.Equal("bladder", registry.Get("organamnist").Labels[0]);
    }

    [Fact]
    public void FileNamesMapToSubsetsAndSizes()
    {
        Assert.Equal("pathmnist.npz", registry.Get("pathmnist").FileName(28));
        Assert.Equal("organmnist3d_64.npz", registry.Get("organmnist3d").FileName(64));
        Assert.Equal(("pathmnist", 64), registry.ForFile("/data/pathmnist_64.npz") is { } a ? (a.Subset.Name, a.Size) : default);
        Assert.Equal(("nodulemnist3d", 28), registry.ForFile("nodulemnist3d.npz") is { } b ? (b.Subset.Name, b.Size) : default);
        Assert.Null(registry.ForFile("mnist.npz"));
        Assert.Null(registry.ForFile("pathmnist.npy"));
    }

    [Fact]
    public void UnknownNamesAndSizesListWhatThereIs()
    {
        var e = Assert.Throws<ArgumentException>(() => registry.Get("pathmnist2"));
        Assert.Contains("pathmnist2", e.Message);
        Assert.Contains("synapsemnist3d", e.Message);
        var size = Assert.Throws<ArgumentException>(() => registry.Get("organmnist3d").File(128));
        Assert.Contains("its sizes are 28, 64", size.Message);
    }

    const string ValidSubset = """
        {"name": "tiny", "dimensionality": "2d", "organ": "chest", "modality": "xray", "channels": 1, "task": "binary-class",
         "labels": ["no", "yes"], "splits": {"train": 3, "val": 1, "test": 2},
         "files": {"28": {"url": "http://127.0.0.1:9/tiny.npz", "md5": "0123456789ABCDEF0123456789abcdef", "bytes": 1000}}}
        """;

    [Fact]
    public void ARegistryFileOfTheSameSchemaParses()
    {
        var parsed = MedMnistRegistry.Parse($$"""{"subsets": [{{ValidSubset}}]}""", "test.json");
        var tiny = Assert.Single(parsed.Subsets);
        Assert.Equal("0123456789abcdef0123456789abcdef", tiny.File(28).Md5);
        Assert.Equal(1000, tiny.File(28).Bytes);
        Assert.Equal(2, tiny.Splits["test"]);
    }

    [Theory]
    [InlineData("\"md5\": \"0123456789ABCDEF0123456789abcdef\"", "\"md5\": \"xyz\"", "md5 'xyz' is not 32 hex digits")]
    [InlineData("\"organ\": \"chest\"", "\"organ\": \"toe\"", "organ 'toe' is not one of")]
    [InlineData("\"task\": \"binary-class\"", "\"task\": \"regression\"", "task 'regression' is not one of")]
    [InlineData("\"28\": {", "\"big\": {", "the key must be an image size")]
    [InlineData("\"url\": \"http://127.0.0.1:9/tiny.npz\"", "\"url\": \"file:///etc/passwd\"", "is not an http(s) URL")]
    [InlineData("\"test\": 2", "\"test\": -2", "'test' must be an integer")]
    [InlineData("\"labels\": [\"no\", \"yes\"], ", "", "'labels' is missing")]
    public void MalformedEntriesAreRefusedNamingTheSubset(string find, string replace, string fault)
    {
        string json = $$"""{"subsets": [{{ValidSubset.Replace(find, replace)}}]}""";
        var e = Assert.Throws<InvalidDataException>(() => MedMnistRegistry.Parse(json, "bad.json"));
        Assert.StartsWith("bad.json: subset 'tiny'", e.Message);
        Assert.Contains(fault, e.Message);
    }

    [Fact]
    public void DuplicatesAndNonJsonAreRefused()
    {
        Assert.Contains("appears twice", Assert.Throws<InvalidDataException>(
            () => MedMnistRegistry.Parse($$"""{"subsets": [{{ValidSubset}}, {{ValidSubset}}]}""", "x.json")).Message);
        Assert.Contains("not valid JSON", Assert.Throws<InvalidDataException>(() => MedMnistRegistry.Parse("{", "x.json")).Message);
        Assert.Contains("\"subsets\" array", Assert.Throws<InvalidDataException>(() => MedMnistRegistry.Parse("[]", "x.json")).Message);
    }

    [Fact]
    public void TheEnvironmentVariableReplacesTheEmbeddedRegistry()
    {
        string path = Path.Combine(Path.GetTempPath(), $"medformer-registry-{Guid.NewGuid():N}.json");
        File.WriteAllText(path, $$"""{"subsets": [{{ValidSubset}}]}""");
        try
        {
            Environment.SetEnvironmentVariable(MedMnistRegistry.OverrideVariable, path);
            Assert.Equal(["tiny"], MedMnistRegistry.Default.Names);
            Assert.Equal(path, MedMnistRegistry.Default.Source);
        }
        finally
        {
            Environment.SetEnvironmentVariable(MedMnistRegistry.OverrideVariable, null);
            File.Delete(path);
        }
        Assert.Equal(18, MedMnistRegistry.Default.Subsets.Count);
    }
}
