using static TorchSharp.torch;

namespace Medformer.Tests.Datasets;

/// <summary>The real DICOM files under tests/datasets/data/dicom (from pydicom's test files) and a scratch folder per test class.</summary>
sealed class DicomTestFiles : IDisposable
{
    public static string Real(string name) => Path.Combine(Repo.Root, "tests", "datasets", "data", "dicom", name);

    public string Folder { get; } = Directory.CreateTempSubdirectory("medformer-dicom-").FullName;

    public string PathFor(string name) => Path.Combine(Folder, name);

    public string Write(string name, byte[] bytes)
    {
        string path = PathFor(name);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);

    /// <summary>min, max, mean and sum in float64, as numpy gives them for <c>pixel_array * slope + intercept</c>.</summary>
    public static (double Min, double Max, double Mean, double Sum) Statistics(Tensor values)
    {
        using var scope = NewDisposeScope();
        var wide = values.to(ScalarType.Float64);
        return (wide.min().item<double>(), wide.max().item<double>(), wide.mean().item<double>(), wide.sum().item<double>());
    }

    public static double[] Values(Tensor values)
    {
        using var wide = values.to(ScalarType.Float64).contiguous().flatten();
        return wide.data<double>().ToArray();
    }
}
