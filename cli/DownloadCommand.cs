using System.CommandLine;
using Medformer.Datasets.Corpora;
using Medformer.Runtime;
using Medformer.Runtime.Net;
using Spectre.Console;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer download medmnist NAME</c>: a MedMNIST subset into $MEDFORMER_HOME/medmnist, resumed, verified and
/// renamed into place; <c>medformer download phantom</c>: the embedded phantom corpus, generated. Exit status 0 done
/// (or already there), 1 the download failed, 2 bad arguments.
/// </summary>
public static class DownloadCommand
{
    public static Command Create()
    {
        var command = new Command("download", "Fetch a dataset into $MEDFORMER_HOME (default ~/.cache/medformer).");
        command.Subcommands.Add(MedMnist());
        command.Subcommands.Add(PhantomCorpus());
        return command;
    }

    static Command MedMnist()
    {
        var name = new Argument<string?>("name") { Description = "The subset, e.g. pathmnist or organmnist3d (--list shows them).", Arity = ArgumentArity.ZeroOrOne };
        var size = new Option<int>("--size") { Description = "Image size: 28, 64, 128 or 224 for 2D; 28 or 64 for 3D.", DefaultValueFactory = _ => 28 };
        var output = new Option<string?>("--out") { Description = "Folder to put NAME[_SIZE].npz in (default $MEDFORMER_HOME/medmnist)." };
        var mirror = new Option<string?>("--mirror") { Description = $"Fetch from URL/NAME[_SIZE].npz instead of the published URL (or set {MedMnistRegistry.MirrorVariable})." };
        var timeout = new Option<double>("--timeout") { Description = "Seconds to wait for a response or for more data before retrying.", DefaultValueFactory = _ => 30 };
        var retries = new Option<int>("--retries") { Description = "Retries after a failure that may pass (each resumes).", DefaultValueFactory = _ => 5 };
        var list = new Option<bool>("--list") { Description = "List the subsets, their sizes and tasks, and exit." };
        var command = new Command("medmnist", "A MedMNIST v2/v3 subset (.npz), verified against its published MD5.");
        command.Arguments.Add(name);
        foreach (var option in new Option[] { size, output, mirror, timeout, retries, list }) command.Options.Add(option);
        command.SetAction(async (parse, cancellation) =>
        {
            MedMnistRegistry registry;
            try
            {
                registry = MedMnistRegistry.Default;
            }
            catch (Exception e) when (e is InvalidDataException or FileNotFoundException)
            {
                return Fail(2, e.Message);
            }
            if (parse.GetValue(list))
            {
                foreach (var subset in registry.Subsets)
                    Console.WriteLine($"{subset.Name,-16} {subset.Dimensionality}  {subset.Organ + "/" + subset.Modality,-20} {subset.Task,-19} sizes {string.Join(",", subset.Sizes)}");
                return 0;
            }
            string? subsetName = parse.GetValue(name);
            if (string.IsNullOrEmpty(subsetName))
                return Fail(2, $"name a subset: {string.Join(", ", registry.Names)}");
            if (!registry.TryGet(subsetName, out var chosen))
                return Fail(2, $"no MedMNIST subset '{subsetName}': the subsets are {string.Join(", ", registry.Names)}");
            int imageSize = parse.GetValue(size);
            if (!chosen.Files.TryGetValue(imageSize, out var file))
                return Fail(2, $"{chosen.Name} has no size {imageSize}: its sizes are {string.Join(", ", chosen.Sizes)}");
            double seconds = parse.GetValue(timeout);
            int retryCount = parse.GetValue(retries);
            if (!(seconds > 0) || retryCount < 0) return Fail(2, "--timeout must be positive and --retries at least 0");

            string fileName = chosen.FileName(imageSize);
            Uri url;
            try
            {
                url = chosen.DownloadUrl(imageSize, parse.GetValue(mirror) ?? Environment.GetEnvironmentVariable(MedMnistRegistry.MirrorVariable));
            }
            catch (ArgumentException e)
            {
                return Fail(2, e.Message);
            }
            string folder = parse.GetValue(output) ?? Path.Combine(MedformerHome.Path, "medmnist");
            string destination = Path.Combine(folder, fileName);
            Console.WriteLine($"{fileName}: {url} -> {destination}");

            var options = new DownloadOptions(TimeSpan.FromSeconds(seconds), retryCount, TimeSpan.FromSeconds(1));
            try
            {
                var result = Console.IsOutputRedirected
                    ? await Download.FetchAsync(url, destination, file.Checksum, file.Bytes, WithPlainProgress(options, fileName), cancellation)
                    : await WithProgressBar(fileName, options, o => Download.FetchAsync(url, destination, file.Checksum, file.Bytes, o, cancellation));
                Console.WriteLine(result.Outcome == DownloadOutcome.AlreadyPresent
                    ? $"{fileName}: already present and verified (MD5 {file.Md5}); nothing to do"
                    : $"{fileName}: done, {Megabytes(result.Bytes)} MB, MD5 verified{(result.ResumedFrom > 0 ? $", resumed from byte {result.ResumedFrom}" : "")}");
                return 0;
            }
            catch (DownloadException e)
            {
                return Fail(1, e.Message);
            }
            catch (IOException e)
            {
                return Fail(1, $"{destination}: {e.Message}");
            }
            catch (UnauthorizedAccessException e)
            {
                return Fail(1, $"{destination}: {e.Message}");
            }
        });
        return command;
    }

    static Command PhantomCorpus()
    {
        var dimensionality = new Option<string>("--dimensionality") { Description = "2d or 3d.", DefaultValueFactory = _ => "2d" };
        var size = new Option<int>("--size") { Description = "Image size (28 by default; 2D up to 256, 3D up to 64).", DefaultValueFactory = _ => 28 };
        var output = new Option<string?>("--out") { Description = "Folder (default $MEDFORMER_HOME/phantom)." };
        var command = new Command("phantom", "The embedded phantom corpus in MedMNIST's layout, generated (nothing to fetch).");
        command.Options.Add(dimensionality);
        command.Options.Add(size);
        command.Options.Add(output);
        command.SetAction(parse =>
        {
            PhantomSpec spec;
            try
            {
                spec = PhantomSpec.Default(parse.GetValue(dimensionality)!, parse.GetValue(size));
                _ = Phantom.Subset(spec);
            }
            catch (ArgumentException e)
            {
                return Fail(2, e.Message);
            }
            TorchRuntime.EnsureLoaded();
            string path = Phantom.Ensure(spec, parse.GetValue(output));
            Console.WriteLine($"{path}: {spec.Train}/{spec.Val}/{spec.Test} {spec.Dimensionality} images of {spec.Size}, seed {spec.Seed}");
            return 0;
        });
        return command;
    }

    // Not a terminal: a line at each tenth of the file (or each 50 MB when its length is unknown), and the log lines.
    static DownloadOptions WithPlainProgress(DownloadOptions options, string fileName)
    {
        long nextMark = 0;
        return options with
        {
            Log = line => Console.WriteLine(line),
            Progress = p =>
            {
                long step = p.Total is { } total and > 0 ? Math.Max(total / 10, 1) : 50L << 20;
                if (p.Received < nextMark && p.Received != p.Total) return;
                nextMark = (p.Received / step + 1) * step;
                Console.WriteLine(p.Total is { } t and > 0
                    ? $"{fileName}: {100.0 * p.Received / t:0}% ({Megabytes(p.Received)} of {Megabytes(t)} MB)"
                    : $"{fileName}: {Megabytes(p.Received)} MB");
            },
        };
    }

    static async Task<DownloadResult> WithProgressBar(string fileName, DownloadOptions options, Func<DownloadOptions, Task<DownloadResult>> run)
    {
        return await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(fileName), autoStart: true, maxValue: 1);
                var result = await run(options with
                {
                    Log = line => AnsiConsole.MarkupLine(Markup.Escape(line)),
                    Progress = p =>
                    {
                        if (p.Total is { } total and > 0) task.MaxValue = total;
                        else task.IsIndeterminate = true;
                        task.Value = p.Received;
                    },
                });
                task.MaxValue = Math.Max(1, result.Bytes);
                task.Value = task.MaxValue;
                return result;
            });
    }

    static string Megabytes(long bytes) => (bytes / 1e6).ToString("0.0");

    static int Fail(int status, string message)
    {
        Console.Error.WriteLine("medformer download: " + message);
        return status;
    }
}
