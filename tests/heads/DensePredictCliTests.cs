using Medformer.Datasets.Corpora;
using Medformer.Datasets.Formats;
using Medformer.Runtime;
using Xunit;
using static TorchSharp.torch;

namespace Medformer.Tests.Heads;

/// <summary><c>medformer finetune --head segmentation</c> then <c>medformer predict</c> on NIfTI files: masks on each input's grid, any size.</summary>
public sealed class DensePredictCliTests : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-dense-cli-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    static readonly Dictionary<string, string> Home = new() { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "none" };

    [Fact]
    public void FinetunesASegmentationHeadAndWritesMasksForInputsOfAnySize()
    {
        string pretrained = Path.Combine(root, "pretrained");
        Seeding.SeedEverything(0);
        using (var model = new MedformerModel(SegmentationHeadTests.Config)) Checkpoint.Save(model, pretrained);
        string tuned = Path.Combine(root, "tuned");
        var finetune = Repo.Run(Repo.Cli, ["finetune", "--checkpoint", pretrained, "--task", "phantom", "--head", "segmentation", "--max-steps", "3",
            "--batch-size", "4", "--precision", "fp32", "--no-augment", "--out", tuned, "--json"], timeoutSeconds: 600, environment: Home);
        Assert.True(finetune.ExitCode == 0, finetune.Stderr);
        Assert.Contains("\"dice\"", finetune.Stdout);

        using var test = Phantom.Open(PhantomSpec.Default2d, "test", Path.Combine(Repo.TestHome, "phantom"));
        using var sample = test.Get(0);
        string same = Path.Combine(root, "same.nii.gz"), larger = Path.Combine(root, "larger.nii.gz"), volume = Path.Combine(root, "volume.nii.gz");
        NiftiWriter.Write(same, sample.Image[0], [0.5, 0.5]);
        using (var padded = nn.functional.pad(sample.Image, [4, 4, 6, 6], TorchSharp.PaddingModes.Replicate)) NiftiWriter.Write(larger, padded[0], [0.5, 0.5]);
        using (var block = zeros(8, 28, 28)) NiftiWriter.Write(volume, block, [1, 1, 1]);

        string output = Path.Combine(root, "predicted");
        var predict = Repo.Run(Repo.Cli, ["predict", "--checkpoint", Path.Combine(tuned, "model"), same, larger, "--out", output, "--json"], environment: Home);
        Assert.True(predict.ExitCode == 0, predict.Stderr);
        using (var mask = MedicalFile.Read(Path.Combine(output, "same_mask.nii.gz"))) Assert.Equal([28L, 28], mask.Voxels.shape);
        using (var mask = MedicalFile.Read(Path.Combine(output, "larger_mask.nii.gz")))
        {
            Assert.Equal([40L, 36], mask.Voxels.shape);
            Assert.Equal(0.5, mask.Spacing[0], 6);
        }

        var wrong = Repo.Run(Repo.Cli, ["predict", "--checkpoint", Path.Combine(tuned, "model"), volume, "--out", output], environment: Home);
        Assert.Equal(2, wrong.ExitCode);
        Assert.Contains(volume, wrong.Stderr);
        Assert.Contains("the head takes 2D images", wrong.Stderr);
    }
}
