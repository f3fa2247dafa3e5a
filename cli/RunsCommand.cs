using System.CommandLine;
using Medformer.Tracking;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer runs list | show RUN | compare RUN RUN… | replay SPOOL | migrate FROM TO</c>: the MLflow runs in
/// ./mlflow.db (or <c>--tracking-uri</c>, <c>MLFLOW_TRACKING_URI</c>: a database, a file store or a server). A RUN is
/// an id, a unique prefix of one, or a run name. Exit status 0, 1 when a server could not be reached, a spool file not
/// wholly sent or a store could not be read or written, 2 for bad arguments.
/// </summary>
public static class RunsCommand
{
    public static Command Create()
    {
        var command = new Command("runs", "MLflow runs: list them, show one, compare several (with a plot), replay a spool file, copy them to another store.");
        command.Subcommands.Add(List());
        command.Subcommands.Add(Show());
        command.Subcommands.Add(Compare());
        command.Subcommands.Add(Replay());
        command.Subcommands.Add(Migrate());
        return command;
    }

    /// <summary>The --tracking-uri option shared with the commands that log runs.</summary>
    public static Option<string?> TrackingUriOption(string logs) => new("--tracking-uri")
    {
        Description =
            $"{logs}: sqlite:///FILE.db (MLflow's database), a folder or file:PATH (MLflow's file store), http(s)://HOST:PORT of " +
                "an MLflow server, or none (default: " +
                $"${TrackingUri.Variable}, else {TrackingUri.Default}).",
    };

    static Option<bool> Json() => new("--json") { Description = "Print one JSON object." };

    static Command List()
    {
        var uri = TrackingUriOption("Where the runs are");
        var experiment = new Option<string?>("--experiment") { Description = "Only this experiment (name or id)." };
        var json = Json();
        var command = new Command("list", "Experiments and their runs: status, start, duration, final metrics.");
        foreach (var option in new Option[] { uri, experiment, json }) command.Options.Add(option);
        command.SetAction(parse => Read(parse.GetValue(uri), report =>
        {
            var runs = report.List(parse.GetValue(experiment));
            Console.Write(parse.GetValue(json) ? report.ListJson(runs).ToJsonString() + "\n" : report.FormatList(runs));
        }));
        return command;
    }

    static Command Show()
    {
        var uri = TrackingUriOption("Where the runs are");
        var run = new Argument<string>("RUN") { Description = "A run id, a unique prefix of one, or a run name (its newest run)." };
        var json = Json();
        var command = new Command("show", "One run: its params, tags and metrics (final and best).");
        command.Arguments.Add(run);
        command.Options.Add(uri);
        command.Options.Add(json);
        command.SetAction(parse => Read(parse.GetValue(uri), report =>
        {
            var record = report.Resolve(parse.GetValue(run)!);
            Console.Write(parse.GetValue(json) ? report.RunJson(record).ToJsonString() + "\n" : report.FormatShow(record));
        }));
        return command;
    }

    static Command Compare()
    {
        var uri = TrackingUriOption("Where the runs are");
        var runs = new Argument<string[]>("RUN") { Description = "Two or more runs: ids, unique prefixes or names.", Arity = new ArgumentArity(2, 100) };
        var metric = new Option<string[]>("--metric") { Description = "Metrics to compare and plot (default: those all the runs have).",
            AllowMultipleArgumentsPerToken = true };
        var plot = new Option<string[]>("--plot") { Description = "Write a plot of the metrics over steps to FILE.png or FILE.svg (may be given twice)." };
        var json = Json();
        var command = new Command("compare", "Runs side by side: params (the differing ones marked *), final and best metrics, and a plot.");
        command.Arguments.Add(runs);
        foreach (var option in new Option[] { uri, metric, plot, json }) command.Options.Add(option);
        command.SetAction(parse => Read(parse.GetValue(uri), report =>
        {
            var records = parse.GetValue(runs)!.Select(report.Resolve).ToList();
            var metrics = parse.GetValue(metric) is { Length: > 0 } chosen ? chosen.ToList() : RunsReport.MetricKeys(records);
            var plots = parse.GetValue(plot) ?? [];
            foreach (string file in plots) report.Plot(records, metrics, file);
            if (parse.GetValue(json))
            {
                Console.WriteLine(report.CompareJson(records, plots).ToJsonString());
                return;
            }
            Console.Write(report.FormatCompare(records, metrics));
            foreach (string file in plots) Console.WriteLine($"plot: {Path.GetFullPath(file)}");
        }));
        return command;
    }

    static Command Replay()
    {
        var spool = new Argument<string>("SPOOL") { Description = "A spool file (mlflow-spool-….jsonl) left by a run whose server was out of reach." };
        var uri = new Option<string?>("--tracking-uri") { Description =
            "The server to send to (default: $MLFLOW_TRACKING_URI). Never the one the spool file names unless you name it: a spool file can come from anyone."
                };
        var command = new Command("replay", "Send a run's entries that did not reach the tracking server; the file is removed once all are sent.");
        command.Arguments.Add(spool);
        command.Options.Add(uri);
        command.SetAction(parse =>
        {
            string file = parse.GetValue(spool)!;
            string? given = parse.GetValue(uri) is { Length: > 0 } option ? option
                : Environment.GetEnvironmentVariable(TrackingUri.Variable) is { Length: > 0 } env ? env : null;
            if (given is null)
                throw new ArgumentException($"no server given; pass --tracking-uri URL (or set {TrackingUri.Variable}). The spool file names " +
                    $"{SpoolServer(file)}, but it is sent only where you say");
            // The spool file named is an argument: one that is not a spool file is a bad argument.
            var outcome = ExitCodes.NamedByArgument(() => Mlflow.Replay(file, TrackingUri.Parse(given)));
            if (outcome.Warning is { } warning)
            {
                Console.Error.WriteLine("medformer runs replay: " + warning);
                return ExitCodes.Failed;
            }
            Console.WriteLine($"sent to {outcome.Location}: run {outcome.RunId}");
            return ExitCodes.Done;
        });
        return command;
    }

    static Command Migrate()
    {
        var from = new Argument<string>("FROM") { Description = "The store to copy from: a folder or file:PATH (MLflow's file store), or sqlite:///FILE.db." };
        var to = new Argument<string>("TO") { Description =
            "The store to copy into (made if missing), e.g. sqlite:///mlflow.db; runs it already holds are never overwritten." };
        var command = new Command("migrate",
            "Copy every run (params, tags, all metric points, artifacts, status) from one local store to another, e.g. ./mlruns to sqlite:///mlflow.db.");
        command.Arguments.Add(from);
        command.Arguments.Add(to);
        command.SetAction(parse =>
        {
            var source = TrackingUri.Parse(parse.GetValue(from)!);
            var target = TrackingUri.Parse(parse.GetValue(to)!);
            if (source.Server is not null || target.Server is not null || source.IsNone || target.IsNone)
                throw new ArgumentException("runs migrate: FROM and TO are local stores (a folder, file:PATH or sqlite:///FILE.db); a server's runs are " +
                    "read with `runs list --tracking-uri URL`");
            if (source.ToString() == target.ToString()) throw new ArgumentException($"runs migrate: FROM and TO are the same store ({source})");
            try
            {
                var reader = (ITrackingStore)source.OpenReader();
                var outcome = RunMigration.Copy(reader, target.OpenStore()!, line => Console.WriteLine("copied " + line));
                Console.WriteLine($"{outcome.Runs} run(s) of {outcome.Experiments} experiment(s), {outcome.MetricPoints} metric point(s) " +
                    $"and {outcome.ArtifactFiles} artifact " +
                    $"file(s) copied from {source} to {target}");
                return 0;
            }
            catch (Exception e) when (e is InvalidOperationException or InvalidDataException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine("medformer runs migrate: " + e.Message.Split('\n')[0]);
                return 1;
            }
        });
        return command;
    }

    /// <summary>The server a spool file names, for the message that asks which server to send to.</summary>
    static string SpoolServer(string file)
    {
        try
        {
            return Mlflow.SpoolServer(file);
        }
        catch (Exception e) when (e is InvalidDataException or IOException or ArgumentException)
        {
            return "no server it could read";
        }
    }

    static int Read(string? trackingUri, Action<RunsReport> action)
    {
        ITrackingReader reader;
        try
        {
            reader = TrackingUri.Resolve(trackingUri).OpenReader();
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            // A database that is not one, or cannot be opened: a bad file, named.
            Console.Error.WriteLine("medformer runs: " + e.Message.Split('\n')[0]);
            return 1;
        }
        try
        {
            action(new RunsReport(reader));
            return ExitCodes.Done;
        }
        finally
        {
            (reader as IDisposable)?.Dispose();
        }
    }
}
