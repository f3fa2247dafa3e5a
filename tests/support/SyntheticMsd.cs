using System.Text.Json.Nodes;
using Medformer.Datasets.Formats;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Tests;

/// <summary>
/// A Medical Segmentation Decathlon task folder (dataset.json, imagesTr, labelsTr as NIfTI): each case a noisy
/// volume with one bright sphere at a random place, its label map the sphere (class 1) on background.
/// </summary>
static class SyntheticMsd
{
    public static string Write(string folder, int cases, long size, long seed)
    {
        Directory.CreateDirectory(Path.Combine(folder, "imagesTr"));
        Directory.CreateDirectory(Path.Combine(folder, "labelsTr"));
        using var generator = new Generator((ulong)seed);
        var training = new JsonArray();
        for (int i = 0; i < cases; i++)
        {
            using var scope = NewDisposeScope();
            var axis = linspace(-1, 1, size);
            var grid = meshgrid([axis, axis, axis], indexing: "ij");
            var centre = (rand(3, generator: generator) - 0.5) * 0.8;
            var d2 = (grid[0] - centre[0]).square() + (grid[1] - centre[1]).square() + (grid[2] - centre[2]).square();
            var label = (d2 < 0.16).to(ScalarType.Byte);
            var image = label.to(ScalarType.Float32) * 0.8 + randn([size, size, size], generator: generator) * 0.1;
            NiftiWriter.Write(Path.Combine(folder, "imagesTr", $"sphere_{i}.nii.gz"), image, [1.5, 1.0, 1.0]);
            NiftiWriter.Write(Path.Combine(folder, "labelsTr", $"sphere_{i}.nii.gz"), label, [1.5, 1.0, 1.0]);
            training.Add(new JsonObject { ["image"] = $"./imagesTr/sphere_{i}.nii.gz", ["label"] = $"./labelsTr/sphere_{i}.nii.gz" });
        }
        var dataset = new JsonObject
        {
            ["name"] = "Spheres", ["tensorImageSize"] = "3D", ["modality"] = new JsonObject { ["0"] = "CT" },
            ["labels"] = new JsonObject { ["0"] = "background", ["1"] = "sphere" },
            ["numTraining"] = cases, ["numTest"] = 0, ["training"] = training, ["test"] = new JsonArray(),
        };
        File.WriteAllText(Path.Combine(folder, "dataset.json"), dataset.ToJsonString());
        return folder;
    }
}
