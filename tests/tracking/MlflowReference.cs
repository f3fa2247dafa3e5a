using System.Text.Json.Nodes;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>
/// A store as MLflow's rules read it: tests/reference/mlflow_file_store_reader.py, with PyYAML and Python's float()
/// (MLflow itself is not installable here: no Debian package, and PyPI is out of reach).
/// </summary>
static class MlflowReference
{
    public static JsonObject Read(string root)
    {
        var result = Repo.Run("/usr/bin/python3", [Path.Combine(Repo.Root, "tests", "reference", "mlflow_file_store_reader.py"), root]);
        Assert.True(result.ExitCode == 0, result.Stderr);
        return (JsonObject)JsonNode.Parse(result.Stdout)!;
    }

    /// <summary>Reads the store and fails on any problem MLflow would meet.</summary>
    public static JsonObject ReadClean(string root)
    {
        var store = Read(root);
        var problems = store["problems"]!.AsArray().Select(p => (string)p!).ToList();
        Assert.True(problems.Count == 0, "MLflow's rules found problems:\n" + string.Join('\n', problems));
        return store;
    }

    public static JsonObject Run(JsonObject store, string runId) =>
        store["experiments"]!.AsArray().SelectMany(e => e!["runs"]!.AsArray()).Cast<JsonObject>().Single(r => (string)r["run_id"]! == runId);
}
