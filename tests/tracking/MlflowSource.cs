using System.Text.Json.Nodes;
using Xunit;

namespace Medformer.Tests.Tracking;

/// <summary>
/// MLflow's own source tree, run on Debian's python3-sqlalchemy, python3-alembic and friends (scripts/setup.sh), to
/// read what Medformer wrote with MLflow's SqlAlchemyStore and MlflowClient. MLflow is not installable here (no
/// Debian package, no PyPI) and its code is not vendored, so the tree comes from MEDFORMER_MLFLOW_SOURCE or
/// tests/reference/mlflow-src (git-ignored), or .build/mlflow-src, which test.sh unpacks from a local mirror of the
/// repository when there is one: a checkout of github.com/mlflow/mlflow, of which the mlflow/ folder is read.
/// </summary>
static class MlflowSource
{
    public const string Variable = "MEDFORMER_MLFLOW_SOURCE";

    public static string? Path { get; } = Find();

    /// <summary>Why the MLflow tests cannot run here, or null when they can.</summary>
    public static string? Missing { get; } = Check();

    static string? Find()
    {
        foreach (string? candidate in new[] { Environment.GetEnvironmentVariable(Variable), System.IO.Path.Combine(Repo.Root, "tests", "reference",
            "mlflow-src"), System.IO.Path.Combine(Repo.Root, ".build", "mlflow-src") })
            if (candidate is { Length: > 0 } && File.Exists(System.IO.Path.Combine(candidate, "mlflow", "store", "tracking", "sqlalchemy_store.py")))
                return System.IO.Path.GetFullPath(candidate);
        return null;
    }

    static string? Check()
    {
        if (Path is null)
            return $"MLflow's source tree is not here: set {Variable} to a checkout of github.com/mlflow/mlflow (or put one at tests/reference/mlflow-src) " +
                "to read our stores with MLflow's own SqlAlchemyStore and MlflowClient";
        var probe = Repo.Run("/usr/bin/python3", ["-c", "import sqlalchemy, alembic, google.protobuf, pydantic, cachetools, sqlparse, yaml"]);
        return probe.ExitCode == 0 ? null : $"MLflow's Python dependencies are missing (scripts/setup.sh installs them): {probe.Stderr.Trim().Split('\n')[^1]}";
    }

    /// <summary>What MLflow's client reads at a tracking URI (tests/reference/mlflow_reader.py), failing on any problem it met.</summary>
    public static JsonObject Read(string trackingUri)
    {
        var result = Repo.Run("/usr/bin/python3", [System.IO.Path.Combine(Repo.Root, "tests", "reference", "mlflow_reader.py"), Path!, trackingUri],
            timeoutSeconds: 300);
        Assert.True(result.ExitCode == 0, "MLflow could not read " + trackingUri + ":\n" + result.Stderr);
        var store = (JsonObject)JsonNode.Parse(result.Stdout)!;
        var problems = store["problems"]!.AsArray().Select(p => (string)p!).ToList();
        Assert.True(problems.Count == 0, "MLflow found problems:\n" + string.Join('\n', problems));
        return store;
    }
}

/// <summary>A test that runs MLflow's own code; skipped, saying why, where its source tree or dependencies are missing.</summary>
public sealed class MlflowSourceFactAttribute : FactAttribute
{
    public MlflowSourceFactAttribute()
    {
        if (MlflowSource.Missing is { } reason) Skip = reason;
    }
}
