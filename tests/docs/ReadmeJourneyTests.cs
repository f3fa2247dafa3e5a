using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit;
using Xunit.Abstractions;

namespace Medformer.Tests.Docs;

/// <summary>
/// README.md's journey cannot go stale: its commands (the <c>$ </c> lines of the console blocks under "The journey")
/// run in order in an empty folder, as written, with <c>./medformer</c> the built command; each must exit 0, leave the
/// files its verb promises under its --out, and print every output line the README shows for it (numbers, "…" and
/// column padding may differ; "…" stands for what the README trims).
/// </summary>
public sealed partial class ReadmeJourneyTests(ITestOutputHelper output) : IDisposable
{
    readonly string root = Directory.CreateTempSubdirectory("medformer-readme-journey-").FullName;

    public void Dispose() => Directory.Delete(root, recursive: true);

    /// <summary>A command of the journey and the output lines the README shows under it.</summary>
    public sealed record Step(string Command, IReadOnlyList<string> Shown)
    {
        public IReadOnlyList<string> Words { get; } = Command.Split(' ', StringSplitOptions.RemoveEmptyEntries);

        /// <summary>"pretrain", "runs compare", …: the words after ./medformer up to the first option or argument that is a path.</summary>
        public string Verb => Words[1] == "runs" ? $"runs {Words[2]}" : Words[1];

        public string? Out => Words.SkipWhile(w => w != "--out").Skip(1).FirstOrDefault();
    }

    static string ReadmePath => Path.Combine(Repo.Root, "README.md");

    /// <summary>The journey's steps, from README.md.</summary>
    public static IReadOnlyList<Step> Journey(IEnumerable<string> readme)
    {
        var lines = readme.SkipWhile(l => l != "## The journey").Skip(1).TakeWhile(l => !l.StartsWith("## ", StringComparison.Ordinal)).ToList();
        var steps = new List<Step>();
        bool inBlock = false;
        string? command = null;
        var shown = new List<string>();
        void Flush()
        {
            if (command is not null) steps.Add(new Step(command, [.. shown]));
            (command, shown) = (null, []);
        }
        for (int i = 0; i < lines.Count; i++)
        {
            string line = lines[i];
            if (!inBlock)
            {
                inBlock = line == "```console";
                continue;
            }
            if (line == "```")
            {
                Flush();
                inBlock = false;
                continue;
            }
            if (line.StartsWith("$ ", StringComparison.Ordinal))
            {
                Flush();
                var text = new StringBuilder(line[2..]);
                while (text.ToString().TrimEnd().EndsWith('\\') && i + 1 < lines.Count)
                {
                    text.Length = text.ToString().TrimEnd().Length - 1;
                    text.Append(' ').Append(lines[++i].Trim());
                }
                command = Regex.Replace(text.ToString(), @"\s+#.*$", "").Trim();
            }
            else if (command is not null && line.Trim() is { Length: > 0 } kept && kept != "…") shown.Add(line);
        }
        return steps;
    }

    /// <summary>An output line as shown, as a pattern: numbers may differ, "…" is anything, runs of spaces any padding, ** (bold) is ignored.</summary>
    public static Regex Pattern(string shown)
    {
        var pattern = new StringBuilder("^");
        foreach (Match token in Token().Matches(shown.Replace("**", "").Trim()))
            pattern.Append(token.Value switch
            {
                "…" => ".*",
                var t when char.IsWhiteSpace(t[0]) => @"\s+",
                var t when char.IsAsciiDigit(t[^1]) => @"-?\d+(?:[.,:]\d+)*(?:e[-+]?\d+)?",
                var t => Regex.Escape(t),
            });
        return new Regex(pattern.Append('$').ToString());
    }

    [GeneratedRegex(@"…|\s+|-?\d+(?:[.,:]\d+)*(?:e[-+]?\d+)?|[^…\s\d]+|.")]
    private static partial Regex Token();

    /// <summary>The files a step's verb promises under its --out.</summary>
    static string[] Promised(Step step) => step.Verb switch
    {
        "pretrain" => ["model/config.json", "model/model.safetensors", "run_config.json"],
        "finetune" => ["model/config.json", "model/model.safetensors", "model/head.json", "model/head.safetensors"],
        "download" => ["phantom2d_28.npz"],
        "predict" => ["predictions.json", "predictions.csv"],
        "evaluate" => ["report.md", "summary.csv", "report.json"],
        "export" => ["config.json", "model.safetensors", "medformer.py"],
        _ => [],
    };

    [Fact]
    public void TheJourneyIsTheIssuesWalkAndTheReadmeStaysShort()
    {
        var readme = File.ReadAllLines(ReadmePath);
        Assert.InRange(readme.Length, 1, 250);
        // A count of tests goes stale the day a test is added: the README quotes none.
        Assert.DoesNotMatch(@"\d[\d,]* (tests|passed)", string.Join('\n', readme));
        var steps = Journey(readme);
        string[] walk = ["pretrain", "finetune", "predict", "evaluate", "export", "runs compare", "pretrain --nproc-per-node"];
        int found = 0;
        foreach (var step in steps)
            if (found < walk.Length && (step.Verb == walk[found] || (walk[found] == "pretrain --nproc-per-node"
                && step.Command.Contains("pretrain --nproc-per-node")))) found++;
        Assert.True(found == walk.Length, $"the journey must walk {string.Join(" → ", walk)}; README.md has {string.Join(" → ", steps.Select(s => s.Verb))}");
        Assert.All(steps, s => Assert.StartsWith("./medformer ", s.Command));
        Assert.All(steps.Where(s => Promised(s).Length > 0), s => Assert.True(s.Out is not null, $"'{s.Command}' names no --out for the files it promises"));
    }

    [Fact]
    public void PatternsAllowOtherNumbersAndTrimmedPartsOnly()
    {
        Assert.Matches(Pattern("step 10/20  loss 2.7122  lr 2.00e-4  eta 00:00:30"), "step 20/20   loss 0.5  lr 6.00e-5  eta 00:01:02");
        Assert.Matches(Pattern("model: …/runs/pretrain/model"), "model: /tmp/x/runs/pretrain/model");
        Assert.Matches(Pattern("| random init | **9.8 ± 0.4** |"), "| random init | 9.9 ± 0.1 |");
        Assert.DoesNotMatch(Pattern("model: …/runs/pretrain/model"), "model: /tmp/x/runs/finetune/model");
        Assert.DoesNotMatch(Pattern("fine-tuned 20 steps"), "pretrained 20 steps");
    }

    [Fact]
    public void EveryCommandRunsAsWrittenAndPrintsWhatTheReadmeShows()
    {
        var steps = Journey(File.ReadAllLines(ReadmePath));
        Assert.NotEmpty(steps);
        // ./medformer is the built command (the checkout's script would rebuild first).
        string wrapper = Path.Combine(root, "medformer");
        File.WriteAllText(wrapper, $"#!/bin/sh\nexec '{Repo.Cli}' \"$@\"\n");
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(wrapper, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        foreach (var step in steps)
        {
            var (code, stdout, stderr, seconds) = Bash(step.Command);
            output.WriteLine($"$ {step.Command}   ({seconds:F0} s, exit {code})\n{stdout}{stderr}");
            Assert.True(code == 0, $"'{step.Command}' exited {code}: {stderr}");
            var printed = (stdout + "\n" + stderr).Split('\n').Select(l => l.Trim()).ToList();
            foreach (string shown in step.Shown)
                Assert.True(printed.Any(Pattern(shown).IsMatch), $"README.md shows '{shown}' under '{step.Command}', which printed:\n{stdout}{stderr}");
            foreach (string file in Promised(step))
                Assert.True(File.Exists(Path.Combine(root, step.Out!, file)), $"'{step.Command}' left no {Path.Combine(step.Out!, file)}");
        }
    }

    (int Code, string Stdout, string Stderr, double Seconds) Bash(string command)
    {
        var start = new ProcessStartInfo("/bin/bash") { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = root };
        start.ArgumentList.Add("-c");
        start.ArgumentList.Add(command);
        // A user's shell: the tests' MEDFORMER_HOME (the phantom generated once), MLflow's defaults (./mlflow.db).
        start.Environment["MEDFORMER_HOME"] = Repo.TestHome;
        foreach (string name in new[] { "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT" })
            start.Environment.Remove(name);
        var clock = Stopwatch.StartNew();
        using var process = Process.Start(start) ?? throw new InvalidOperationException("could not start bash");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(600_000))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"'{command}' ran past 600 s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result, clock.Elapsed.TotalSeconds);
    }
}
