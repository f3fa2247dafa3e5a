using Medformer.Runtime;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>
/// A temporary folder for `medformer finetune`/`predict` runs in a test: the tests' MEDFORMER_HOME, MLflow runs kept
/// inside the folder (finetune logs by default, not to the checkout's ./mlruns), and a tiny pretrained model.
/// </summary>
sealed class CliScratch(ITestOutputHelper output, string prefix) : IDisposable
{
    public string Root { get; } = Directory.CreateTempSubdirectory(prefix).FullName;

    public Repo.Result Run(params string[] args)
    {
        var environment = new Dictionary<string, string> { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = Path.Combine(Root, "mlruns") };
        var result = Repo.Run(Repo.Cli, args, timeoutSeconds: 600, environment: environment);
        output.WriteLine(result.Stdout);
        output.WriteLine(result.Stderr);
        return result;
    }

    /// <summary>A seeded model of <see cref="ClassificationHeadTests.Config"/> saved as a pretrained model folder.</summary>
    public string PretrainedFolder()
    {
        string folder = Path.Combine(Root, "pretrained");
        Seeding.SeedEverything(0);
        using var model = new MedformerModel(ClassificationHeadTests.Config);
        Checkpoint.Save(model, folder);
        return folder;
    }

    public void Dispose() => Directory.Delete(Root, recursive: true);
}
