using System.Text.Json.Nodes;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Heads;

/// <summary>`medformer finetune --dba`: Dynamic Batch Adaptation from the command line, on the phantom with a tiny model, and its bad values.</summary>
public sealed class FinetuneDbaCliTests(ITestOutputHelper output) : IDisposable
{
    readonly CliScratch scratch = new(output, "medformer-finetune-dba-");

    public void Dispose() => scratch.Dispose();

    Repo.Result Run(params string[] args) => scratch.Run(args);

    string PretrainedFolder() => scratch.PretrainedFolder();

    [Fact]
    public void EdbaAdaptsTheBatchAndIsLogged()
    {
        const string settings =
            "edba:strategy=gradient_norm,candidates=0,min_batch=2,max_batch=8,initial_batch=4,delta=2,grow_above=0.8,shrink_below=0.2,window=1,min_selected=0";
        var result = Run("finetune", "--checkpoint", PretrainedFolder(), "--task", "phantom", "--head", "classification:pooling=mean", "--fraction", "0.05",
            "--max-steps", "4", "--batch-size", "8", "--precision", "fp32", "--dba", "edba:min_batch=2,initial_batch=4,delta=2", "--out",
                Path.Combine(scratch.Root, "tuned"), "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var report = JsonNode.Parse(result.Stdout.Trim().Split('\n')[^1])!.AsObject();
        Assert.Equal(4, report["steps"]!.GetValue<long>());
        var adaptation = report["batch_adaptation"]!;
        Assert.Equal(settings, adaptation["settings"]!.GetValue<string>());
        // Four steps from 4 samples, at most +2 a step: a mean below the loader's 8 says the steps took DBA's batches.
        double batch = adaptation["batch_size"]!.GetValue<double>(), selected = adaptation["selected_size"]!.GetValue<double>();
        Assert.InRange(batch, 2, 6.5);
        Assert.InRange(selected, 1, batch);
        Assert.Contains(" selected ", result.Stderr);  // the progress line (stderr with --json)

        string runFolder = Directory.GetFiles(Path.Combine(scratch.Root, "mlruns"), "meta.yaml", SearchOption.AllDirectories)
            .Select(Path.GetDirectoryName).Single(d => Directory.Exists(Path.Combine(d!, "metrics")))!;
        Assert.Equal(settings, File.ReadAllText(Path.Combine(runFolder, "params", "dba")));
        Assert.True(File.Exists(Path.Combine(runFolder, "metrics", "selected_size")));
    }

    [Fact]
    public void BadValuesNameDba()
    {
        string pretrained = PretrainedFolder();
        (string Value, string Message)[] cases =
        [
            ("sgd", "--dba 'sgd': expected dba or edba"),
            ("dba:strategy=best", "--dba strategy: 'best' must be one of"),
            ("edba:min_batch=0", "--dba.min_batch: 0 must be at least 1"),
            ("edba:min_batch=two", "--dba 'edba:min_batch=two': min_batch 'two' is not an integer"),
            ("edba:max_batch=128", "--dba max_batch 128 must not exceed --batch-size 64"),
            ("edba:window", "--dba 'edba:window': 'window' is not key=value"),
            ("edba:size=3", "--dba 'edba:size=3': unknown key 'size'"),
        ];
        foreach (var (value, message) in cases)
        {
            var result = Run("finetune", "--checkpoint", pretrained, "--dba", value, "--out", Path.Combine(scratch.Root, "bad"));
            Assert.Equal(2, result.ExitCode);
            Assert.Contains(message, result.Stderr);
            Assert.Single(result.Stderr.Trim().Split('\n'));
        }
    }
}
