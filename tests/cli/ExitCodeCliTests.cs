using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Cli;

/// <summary>
/// One mapping of errors to exit statuses for every command (cli/ExitCodes.cs): through the real CLI, each command
/// on a bad input file (1) or a bad argument (2) exits with that status and says so in one line that names it,
/// <c>medformer COMMAND: message</c>; MEDFORMER_DEBUG=1 adds the stack.
/// </summary>
public sealed class ExitCodeCliTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-exit-codes-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    Repo.Result Run(IReadOnlyDictionary<string, string>? extra, params string[] args)
    {
        var environment = new Dictionary<string, string> { ["MEDFORMER_HOME"] = Repo.TestHome, ["MLFLOW_TRACKING_URI"] = "none" };
        foreach (var (key, value) in extra ?? new Dictionary<string, string>()) environment[key] = value;
        var result = Repo.Run(Repo.Cli, args, root, 300, environment);
        output.WriteLine($"medformer {string.Join(' ', args)} -> {result.ExitCode}\n{result.Stdout}{result.Stderr}");
        return result;
    }

    /// <summary>A file of the right name and the wrong bytes.</summary>
    string Garbage(string name)
    {
        string path = Path.Combine(root, name);
        File.WriteAllText(path, "not what its name says\n");
        return path;
    }

    string Missing => Path.Combine(root, "missing");

    string Out(string name) => Path.Combine(root, name);

    public static TheoryData<string> Commands => new() { "pretrain", "finetune", "predict", "info", "inspect", "download", "export", "import", "runs",
        "evaluate" };

    /// <summary>Each command's bad case: the command line, the status and what the one line says.</summary>
    (string[] Args, int Status, string Says) BadCase(string command) => command switch
    {
        "pretrain" => (["pretrain", "--config", Config(), "--out", Out("pretrain")], 1, "pathmnist.npz"),
        "finetune" => (["finetune", "--checkpoint", Missing, "--out", Out("finetune")], 1, "no such checkpoint folder"),
        "predict" => (["predict", "--checkpoint", Missing, Garbage("image.npy"), "--out", Out("predict")], 1, "no such checkpoint folder"),
        "info" => (["info", "--config", "tiny", "--input", "0x28"], 2, "--input '0x28'"),
        "inspect" => (["inspect", Garbage("scan.nii")], 1, "scan.nii"),
        "download" => (["download", "medmnist", "nosuchmnist"], 2, "no MedMNIST subset 'nosuchmnist'"),
        "export" => (["export", Missing, "--out", Out("export")], 1, Missing),
        "import" => (["import", Garbage("weights.pt"), "--config", "tiny", "--out", Out("import")], 1, "weights.pt"),
        "runs" => (["runs", "replay", Garbage("spool.jsonl"), "--tracking-uri", "http://127.0.0.1:9"], 2, "spool.jsonl"),
        "evaluate" => (["evaluate", "--fractions", "lots", "--out", Out("evaluate")], 2, "--fractions 'lots'"),
        _ => throw new ArgumentException(command),
    };

    /// <summary>A run config whose one corpus is a MedMNIST file of garbage: found by the check, unreadable when opened.</summary>
    string Config()
    {
        string config = Path.Combine(root, "run.yaml");
        File.WriteAllText(config, $"model: tiny\ncorpora: [{{ medmnist: {Garbage("pathmnist.npz")} }}]\nschedule: {{ max_steps: 2 }}\n");
        return config;
    }

    [Theory]
    [MemberData(nameof(Commands))]
    public void ABadInputOrArgumentIsOneLineWithTheCommandsStatus(string command)
    {
        var (args, status, says) = BadCase(command);
        var result = Run(null, args);
        Assert.Equal(status, result.ExitCode);
        string line = Assert.Single(result.Stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        string who = command == "runs" ? "medformer runs replay: " : command == "download" ? "medformer download medmnist: " : $"medformer {command}: ";
        Assert.StartsWith(who, line);
        Assert.Contains(says, line);
    }

    [Fact]
    public void DebugShowsWhereAnErrorCameFrom()
    {
        var quiet = Run(null, "inspect", Garbage("scan.nii"));
        var debug = Run(new Dictionary<string, string> { ["MEDFORMER_DEBUG"] = "1" }, "inspect", Garbage("scan.nii"));
        Assert.Equal(1, debug.ExitCode);
        Assert.DoesNotContain("   at ", quiet.Stderr);
        Assert.StartsWith("medformer inspect: System.", debug.Stderr);
        Assert.Contains("   at ", debug.Stderr);
    }
}
