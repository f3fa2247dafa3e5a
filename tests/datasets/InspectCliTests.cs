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
