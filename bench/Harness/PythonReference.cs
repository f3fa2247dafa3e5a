using System.Diagnostics;
using System.Text.Json;

namespace Medformer.Bench;

/// <summary>
/// Runs a reference script of bench/reference/ with Debian's PyTorch (/usr/bin/python3: the python3 first on PATH
/// may lack torch) and returns the one JSON object it prints last.
/// </summary>
public static class PythonReference
{
    public const string Interpreter = "/usr/bin/python3";

    public static JsonElement Run(string script, params string[] args)
    {
        string path = Path.Combine(BenchPaths.Reference, script);
        var start = new ProcessStartInfo(Interpreter) { RedirectStandardOutput = true, RedirectStandardError = true };
        start.ArgumentList.Add(path);
        foreach (string arg in args) start.ArgumentList.Add(arg);
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"cannot start {Interpreter}");
        var stderr = process.StandardError.ReadToEndAsync();
        string stdout = process.StandardOutput.ReadToEnd();
        process.WaitForExit();
        if (process.ExitCode != 0)
            throw new InvalidOperationException($"{Interpreter} {path} failed (exit {process.ExitCode}): {stderr.Result.Trim()}");
        string last = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries)[^1];
        return JsonDocument.Parse(last).RootElement.Clone();
    }

    /// <summary>
    /// Runs <paramref name="run"/> with the path of a temporary file holding <paramref name="config"/> as JSON (what the
    /// scripts' --config reads), and deletes the file after it, whether or not it throws.
    /// </summary>
    public static T WithConfig<T>(MedformerConfig config, Func<string, T> run)
    {
        string configFile = Path.Combine(Path.GetTempPath(), $"medformer-bench-{Guid.NewGuid():N}.json");
        File.WriteAllText(configFile, config.ToJson());
        try
        {
            return run(configFile);
        }
        finally
        {
            File.Delete(configFile);
        }
    }
}

static class BenchPaths
{
    /// <summary>bench/reference beside the sources, found from the binary's folder upwards.</summary>
    public static string Reference { get; } = Find();

    static string Find()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir != null; dir = dir.Parent)
        {
            string candidate = Path.Combine(dir.FullName, "bench", "reference");
            if (Directory.Exists(candidate)) return candidate;
        }
        throw new DirectoryNotFoundException("bench/reference not found above " + AppContext.BaseDirectory);
    }
}
