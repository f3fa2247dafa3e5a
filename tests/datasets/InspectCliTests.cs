using System.Text.Json;
using Xunit;

namespace Medformer.Tests.Datasets;

/// <summary>`medformer inspect` end to end, on real files, with the numbers pydicom and nibabel report for them.</summary>
public sealed class InspectCliTests
{
    static string Data(string path) => Path.Combine(Repo.Root, "tests", "datasets", "data", path);

    static JsonElement Inspect(string path)
    {
        var result = Repo.Run(Repo.Cli, ["inspect", path, "--json"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return JsonDocument.Parse(result.Stdout).RootElement;
    }

    [Fact]
    public void ADicomSliceInHounsfieldUnits()
    {
        var report = Inspect(Data("dicom/CT_small.dcm"));
        Assert.Equal([128L, 128], report.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        var stats = report.GetProperty("statistics");
        // pydicom 2.3: pixel_array * RescaleSlope + RescaleIntercept
        Assert.Equal(-896, stats.GetProperty("min").GetDouble());
        Assert.Equal(1167, stats.GetProperty("max").GetDouble());
        Assert.Equal(-1950906, stats.GetProperty("sum").GetDouble());
        Assert.Equal(0.661468, report.GetProperty("spacing")[0].GetDouble(), 5);
        Assert.Equal("LPS", report.GetProperty("frame").GetString());
        Assert.Equal(System.Text.Json.JsonValueKind.Object, report.GetProperty("header").ValueKind);
        Assert.Contains(report.GetProperty("header").EnumerateObject(), p => p.Value.ToString().Contains("CT"));
    }

    [Fact]
    public void ANiftiVolume()
    {
        var report = Inspect(Data("nibabel/anatomical.nii"));
        Assert.Equal([25L, 41, 33], report.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));  // nibabel's (33, 41, 25), slowest axis first
        Assert.Equal([2.0, 2, 2], report.GetProperty("spacing").EnumerateArray().Select(e => e.GetDouble()));
        Assert.Equal("int16", report.GetProperty("tensor_dtype").GetString());
    }

    [Fact]
    public void PlainTextLooksLikeAHeaderDump()
    {
        var result = Repo.Run(Repo.Cli, ["inspect", Data("dicom/CT_small.dcm")]);
        Assert.Equal(0, result.ExitCode);
        Assert.Contains("shape    [128, 128]", result.Stdout);
        Assert.Contains("min -896", result.Stdout);
    }

    [Fact]
    public void BadFilesAreOneLine()
    {
        var compressed = Repo.Run(Repo.Cli, ["inspect", Data("dicom/JPEG2000.dcm")]);
        Assert.Equal(1, compressed.ExitCode);
        Assert.Contains("JPEG2000.dcm", compressed.Stderr);
        Assert.Contains("JPEG 2000", compressed.Stderr);
        Assert.Single(compressed.Stderr.Trim().Split('\n'));
        var missing = Repo.Run(Repo.Cli, ["inspect", Data("nothing.nii")]);
        Assert.Equal(1, missing.ExitCode);
        Assert.Contains("nothing.nii: no such file", missing.Stderr);
    }
}

/// <summary>`medformer inspect` on an .npz: every array with its statistics, and MedMNIST's layout with its subset.</summary>
public sealed class InspectNpzCliTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-inspect-npz-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    string Write(string name)
    {
        string path = Path.Combine(root, name);
        // Two splits' images (uint8, 0..5) and labels; the statistics below are those of these arrays.
        using var images = TorchSharp.torch.arange(0, 2 * 4 * 4, dtype: TorchSharp.torch.ScalarType.Byte).remainder(6).reshape(2, 4, 4);
        using var labels = TorchSharp.torch.tensor(new long[] { 3, 8 }).reshape(2, 1);
        using var weights = TorchSharp.torch.tensor(new float[] { -1.5f, 2.5f });
        Medformer.Datasets.Formats.Npz.Write(path, new Dictionary<string, TorchSharp.torch.Tensor>
        {
            ["train_images"] = images, ["train_labels"] = labels, ["test_images"] = images, ["test_labels"] = labels, ["weights"] = weights,
        });
        return path;
    }

    [Fact]
    public void EveryArrayWithNameShapeDtypeAndStatistics()
    {
        string path = Write("pathmnist.npz");
        var result = Repo.Run(Repo.Cli, ["inspect", path, "--json"]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonDocument.Parse(result.Stdout).RootElement;
        var arrays = report.GetProperty("arrays").EnumerateArray().ToDictionary(a => a.GetProperty("name").GetString()!);
        Assert.Equal(["test_images", "test_labels", "train_images", "train_labels", "weights"], arrays.Keys);
        var images = arrays["train_images"];
        Assert.Equal([2L, 4, 4], images.GetProperty("shape").EnumerateArray().Select(e => e.GetInt64()));
        Assert.Equal("uint8", images.GetProperty("dtype").GetString());
        Assert.Equal((0.0, 5.0), (images.GetProperty("statistics").GetProperty("min").GetDouble(),
            images.GetProperty("statistics").GetProperty("max").GetDouble()));
        Assert.Equal(Enumerable.Range(0, 32).Sum(i => i % 6), images.GetProperty("statistics").GetProperty("sum").GetDouble());
        Assert.Equal("int64", arrays["train_labels"].GetProperty("dtype").GetString());
        Assert.Equal(("float32", "<f4"), (arrays["weights"].GetProperty("dtype").GetString(), arrays["weights"].GetProperty("descr").GetString()));
        Assert.Equal(0.5, arrays["weights"].GetProperty("statistics").GetProperty("mean").GetDouble());
        var layout = report.GetProperty("medmnist");
        Assert.Equal("pathmnist", layout.GetProperty("subset").GetString());
        Assert.Equal(9, layout.GetProperty("classes").GetArrayLength());
        Assert.Equal(2, layout.GetProperty("splits").GetProperty("train").GetInt64());
        Assert.False(layout.GetProperty("splits").TryGetProperty("val", out _));
    }

    [Fact]
    public void ACustomFileNamesItsSubsetFromTheCommandLine()
    {
        string path = Write("mine.npz");
        var unknown = Repo.Run(Repo.Cli, ["inspect", path]);
        Assert.True(unknown.ExitCode == 0, unknown.Stderr);
        Assert.Contains("MedMNIST layout, subset unknown (name it: --subset NAME", unknown.Stdout);
        Assert.Matches(@"\n  train_images\s+\[2, 4, 4\]\s+uint8\s+0\s+5\s", unknown.Stdout);
        var named = Repo.Run(Repo.Cli, ["inspect", path, "--subset", "pathmnist"]);
        Assert.True(named.ExitCode == 0, named.Stderr);
        Assert.Contains("MedMNIST layout: pathmnist (multi-class, 9 classes); train 2, test 2", named.Stdout);
        var wrong = Repo.Run(Repo.Cli, ["inspect", path, "--subset", "nosuch"]);
        Assert.Equal(2, wrong.ExitCode);
        Assert.StartsWith("medformer inspect: --subset 'nosuch': not a MedMNIST subset", wrong.Stderr);
    }
}
