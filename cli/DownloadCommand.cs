using System.CommandLine;
using Medformer.Datasets.Corpora;
using Medformer.Runtime;
using Medformer.Runtime.Net;
using Medformer.Tracking.Hub;
using Spectre.Console;

namespace Medformer.Cli;

/// <summary>
/// <c>medformer download NAME|URL</c>: a checkpoint from the hub into $MEDFORMER_HOME/hub, resumed, verified and
/// unpacked into a model folder; <c>medformer download medmnist NAME</c>: a MedMNIST subset into
/// $MEDFORMER_HOME/medmnist; <c>medformer download phantom</c>: the embedded phantom corpus, generated. Exit status 0
/// done (or already there), 1 the download failed, 2 bad arguments.
/// </summary>
public static class DownloadCommand
{
    public static Command Create()
    {
        var name = new Argument<string?>("name") { Description = "A checkpoint of the hub manifest (--list shows them), or an http(s) URL of one.",
            Arity = ArgumentArity.ZeroOrOne };
        var manifest = new Option<string?>("--manifest") { Description =
            $"The hub manifest: a JSON file or URL (default ${HubManifest.Variable}, else the built-in one)." };
        var manifestSha256 = new Option<string?>("--manifest-sha256") { Description =
            $"The manifest's own SHA-256, pinning it (default ${HubManifest.PinVariable}); required for a manifest over plain http." };
        var sha256 = new Option<string?>("--sha256") { Description =
            "For a URL the manifest does not list: the SHA-256 to verify it against (required for plain http)." };
        var verify = new Option<bool>("--verify") { Description =
            "Hash the cached model folder's files against the digests recorded when it was verified; fetch it again if they differ." };
        var (timeout, retries) = NetworkOptions();
        var list = new Option<bool>("--list") { Description = "List the manifest's checkpoints and exit." };
        var command = new Command("download",
            "Fetch a checkpoint from the hub, or a dataset (medmnist, phantom), into $MEDFORMER_HOME (default ~/.cache/medformer).");
        command.Arguments.Add(name);
        foreach (var option in new Option[] { manifest, manifestSha256, sha256, verify, timeout, retries, list }) command.Options.Add(option);
        command.Subcommands.Add(MedMnist());
        command.Subcommands.Add(PhantomCorpus());
        command.SetAction(async (parse, cancellation) =>
        {
            var options = Options(parse, timeout, retries);
            // The manifest named (or pinned) is an argument: one that is missing, malformed or not trusted is a bad argument.
            var hub = await ExitCodes.NamedByArgument(() => HubManifest.LoadAsync(parse.GetValue(manifest), parse.GetValue(manifestSha256), options,
                cancellation));
            string? wanted = parse.GetValue(name);
            if (parse.GetValue(list))
            {
                if (hub.Checkpoints.Count == 0) Console.WriteLine($"{hub.Source} lists no checkpoints");
                foreach (var listed in hub.Checkpoints)
                    Console.WriteLine($"{listed.Name,-28} {(listed.Size is { } n ? Megabytes(n) + " MB" : ""),10}  {listed.Description}");
                return ExitCodes.Done;
            }
            if (string.IsNullOrEmpty(wanted))
                throw new ArgumentException($"name a checkpoint " +
                    $"({(hub.Checkpoints.Count == 0 ? hub.Source + " lists none" : string.Join(", ", hub.Checkpoints.Select(e => e.Name)))}), give a URL, " +
                    "or name a dataset: medmnist, phantom");
            var chosen = Uri.TryCreate(wanted, UriKind.Absolute, out var url) && url.Scheme is "http" or "https"
                ? hub.ForUrl(url) ?? Direct(url, parse.GetValue(sha256))
                : hub.TryGet(wanted, out var entry) ? entry
                : throw new ArgumentException($"no checkpoint '{wanted}' in {hub.Source}" +
                    (hub.Checkpoints.Count == 0 ? " (it lists none)" : $": it lists {string.Join(", ", hub.Checkpoints.Select(e => e.Name))}"));
            Console.WriteLine($"{chosen.Name}: {chosen.Url} -> {CheckpointHub.Default.Root}");
            bool check = parse.GetValue(verify);
            Func<DownloadOptions, Task<HubFetch>> run = o => CheckpointHub.Default.FetchAsync(chosen, o, ConfigJson, cancellation, check);
            var fetched = Console.IsOutputRedirected
                ? await run(WithPlainProgress(options, chosen.FileName))
                : await WithProgressBar(chosen.FileName, options, run, f => f.Download?.Bytes ?? 0);
            var config = Checkpoint.ReadConfig(fetched.ModelFolder);
            Console.WriteLine(fetched.Outcome == DownloadOutcome.AlreadyPresent
                ? $"{chosen.Name}: already in the cache{(check ? ", every file verified" : "")}, nothing to do"
                : $"{chosen.Name}: done, {Megabytes(fetched.Download!.Bytes)} MB, SHA-256 " +
                    $"{fetched.Sha256}{(chosen.Sha256 == null ? " (not verified: no checksum given)" : " verified")}");
            Console.WriteLine($"{chosen.Name}: model folder {fetched.ModelFolder} (d={config.Dim}, depth {config.Depth})");
            return ExitCodes.Done;
        });
        return command;
    }

    /// <summary>
    /// A hub name as a local model folder (downloaded, verified and unpacked on first use), for commands that take
    /// "a folder or a hub name" (finetune, predict): the manifest is $MEDFORMER_HUB's (pinned by
    /// $MEDFORMER_HUB_SHA256 when over plain http), else the built-in one.
    /// </summary>
    public static string ResolveHubName(string name)
    {
        // On stderr: a --json command's stdout holds one JSON object.
        var options = DownloadOptions.Default with { Log = line => Console.Error.WriteLine("medformer: " + line) };
        var hub = HubManifest.LoadAsync(null, null, options).GetAwaiter().GetResult();
        if (!hub.TryGet(name, out var entry))
            throw new ArgumentException($"'{name}' is neither a checkpoint folder nor a checkpoint in {hub.Source}" +
                (hub.Checkpoints.Count == 0 ? " (it lists none)" : $" (it lists {string.Join(", ", hub.Checkpoints.Select(e => e.Name))})"));
        Console.Error.WriteLine($"medformer: {name}: from the checkpoint hub ({entry.Url})");
        return CheckpointHub.Default.FetchAsync(entry, options, ConfigJson).GetAwaiter().GetResult().ModelFolder;
    }

    // A URL no manifest lists: over plain http only with a SHA-256 to check, as anyone on the path could replace it.
    static HubEntry Direct(Uri url, string? sha256) =>
        url.Scheme == "http" && sha256 == null
            ? throw new ArgumentException($"{url}: a checkpoint over plain http with nothing to verify it against; use https, or give --sha256 HEX")
            : HubEntry.ForUrl(url, sha256);

    // A manifest's config: a preset name or an inline config object, checked as config.json would be.
    // A string is a preset name only: a manifest comes from elsewhere and must not make us read a local file.
    static string ConfigJson(System.Text.Json.JsonElement config) =>
        (config.ValueKind != System.Text.Json.JsonValueKind.String ? MedformerConfig.FromJson(config.GetRawText(), "the manifest's config")
         : config.GetString() is "tiny" or "small" or "base" or "large" ? MedformerConfig.Resolve(config.GetString()!)
         : throw new InvalidDataException($"the manifest's config '{config.GetString()}' is not a preset (tiny, small, " +
             "base, large) or a config object")).ToJson();

    static (Option<double> Timeout, Option<int> Retries) NetworkOptions() =>
        (new Option<double>("--timeout") { Description = "Seconds to wait for a response or for more data before retrying.", DefaultValueFactory = _ => 30 },
         new Option<int>("--retries") { Description = "Retries after a failure that may pass (each resumes).", DefaultValueFactory = _ => 5 });

    static DownloadOptions Options(ParseResult parse, Option<double> timeout, Option<int> retries)
    {
        double seconds = parse.GetValue(timeout);
        int retryCount = parse.GetValue(retries);
        return seconds > 0 && retryCount >= 0 ? new DownloadOptions(TimeSpan.FromSeconds(seconds), retryCount, TimeSpan.FromSeconds(1))
            : throw new ArgumentException("--timeout must be positive and --retries at least 0");
    }

    static Command MedMnist()
    {
        var name = new Argument<string?>("name") { Description = "The subset, e.g. pathmnist or organmnist3d (--list shows them).",
            Arity = ArgumentArity.ZeroOrOne };
        var size = new Option<int>("--size") { Description = "Image size: 28, 64, 128 or 224 for 2D; 28 or 64 for 3D.", DefaultValueFactory = _ => 28 };
        var output = new Option<string?>("--out") { Description = "Folder to put NAME[_SIZE].npz in (default $MEDFORMER_HOME/medmnist). " + OutputOption.Rule };
        var force = OutputOption.Force();
        var mirror = new Option<string?>("--mirror") { Description =
            $"Fetch from URL/NAME[_SIZE].npz instead of the published URL (or set {MedMnistRegistry.MirrorVariable})." };
        var (timeout, retries) = NetworkOptions();
        var list = new Option<bool>("--list") { Description = "List the subsets, their sizes and tasks, and exit." };
        var command = new Command("medmnist", "A MedMNIST v2/v3 subset (.npz), verified against its published MD5.");
        command.Arguments.Add(name);
        foreach (var option in new Option[] { size, output, force, mirror, timeout, retries, list }) command.Options.Add(option);
        command.SetAction(async (parse, cancellation) =>
        {
            var claimed = ClaimOut(parse, output, force);
            // A registry file set by the environment: a setting, like an argument.
            var registry = ExitCodes.NamedByArgument(() => MedMnistRegistry.Default);
            if (parse.GetValue(list)) return ListSubsets(registry);
            int imageSize = parse.GetValue(size);
            var (chosen, file) = ChooseSubset(registry, parse.GetValue(name), imageSize);
            var options = Options(parse, timeout, retries);

            string fileName = chosen.FileName(imageSize);
            var url = chosen.DownloadUrl(imageSize, parse.GetValue(mirror) ?? Environment.GetEnvironmentVariable(MedMnistRegistry.MirrorVariable));
            claimed?.Mark();
            string folder = parse.GetValue(output) ?? Path.Combine(MedformerHome.Path, "medmnist");
            string destination = Path.Combine(folder, fileName);
            Console.WriteLine($"{fileName}: {url} -> {destination}");
            return await FetchSubsetAsync(url, destination, file, fileName, options, cancellation);
        });
        return command;
    }

    static int ListSubsets(MedMnistRegistry registry)
    {
        foreach (var subset in registry.Subsets)
            Console.WriteLine($"{subset.Name,-16} {subset.Dimensionality}  {subset.Organ + "/" + subset.Modality,-20} {subset.Task,-19} " +
                $"sizes {string.Join(",", subset.Sizes)}");
        return ExitCodes.Done;
    }

    /// <summary>The subset named and its file of the size asked for; a bad argument when there is none.</summary>
    static (MedMnistSubset Subset, MedMnistFile File) ChooseSubset(MedMnistRegistry registry, string? subsetName, int imageSize)
    {
        if (string.IsNullOrEmpty(subsetName))
            throw new ArgumentException($"name a subset: {string.Join(", ", registry.Names)}");
        if (!registry.TryGet(subsetName, out var chosen))
            throw new ArgumentException($"no MedMNIST subset '{subsetName}': the subsets are {string.Join(", ", registry.Names)}");
        if (!chosen.Files.TryGetValue(imageSize, out var file))
            throw new ArgumentException($"{chosen.Name} has no size {imageSize}: its sizes are {string.Join(", ", chosen.Sizes)}");
        return (chosen, file);
    }

    static async Task<int> FetchSubsetAsync(Uri url, string destination, MedMnistFile file, string fileName, DownloadOptions options,
        CancellationToken cancellation)
    {
        try
        {
            var result = Console.IsOutputRedirected
                ? await Download.FetchAsync(url, destination, file.Checksum, file.Bytes, WithPlainProgress(options, fileName), cancellation)
                : await WithProgressBar(fileName, options, o => Download.FetchAsync(url, destination, file.Checksum, file.Bytes, o, cancellation),
                    r => r.Bytes);
            Console.WriteLine(result.Outcome == DownloadOutcome.AlreadyPresent
                ? $"{fileName}: already present and verified (MD5 {file.Md5}); nothing to do"
                : $"{fileName}: done, {Megabytes(result.Bytes)} MB, MD5 " +
                    $"verified{(result.ResumedFrom > 0 ? $", resumed from byte {result.ResumedFrom}" : "")}");
            return ExitCodes.Done;
        }
        catch (Exception e) when (e is IOException and not DownloadException or UnauthorizedAccessException)
        {
            // A failed write names the file; a failed download says what failed itself.
            throw new IOException($"{destination}: {e.Message}", e);
        }
    }

    static Command PhantomCorpus()
    {
        var dimensionality = new Option<string>("--dimensionality") { Description = "2d or 3d.", DefaultValueFactory = _ => "2d" };
        var size = new Option<int>("--size") { Description = "Image size (28 by default; 2D up to 256, 3D up to 64).", DefaultValueFactory = _ => 28 };
        var output = new Option<string?>("--out") { Description = "Folder (default $MEDFORMER_HOME/phantom). " + OutputOption.Rule };
        var force = OutputOption.Force();
        var command = new Command("phantom", "The embedded phantom corpus in MedMNIST's layout, generated (nothing to fetch).");
        command.Options.Add(dimensionality);
        command.Options.Add(size);
        command.Options.Add(output);
        command.Options.Add(force);
        command.SetAction(parse =>
        {
            var claimed = ClaimOut(parse, output, force);
            var spec = PhantomSpec.Default(parse.GetValue(dimensionality)!, parse.GetValue(size));
            _ = Phantom.Subset(spec);
            TorchRuntime.EnsureLoaded();
            claimed?.Mark();
            string path = Phantom.Ensure(spec, parse.GetValue(output));
            Console.WriteLine($"{path}: {spec.Train}/{spec.Val}/{spec.Test} {spec.Dimensionality} images of {spec.Size}, seed {spec.Seed}");
            return ExitCodes.Done;
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

    static async Task<T> WithProgressBar<T>(string fileName, DownloadOptions options, Func<DownloadOptions, Task<T>> run, Func<T, long> bytes)
    {
        return await AnsiConsole.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new DownloadedColumn(), new TransferSpeedColumn(),
                new RemainingTimeColumn())
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
                task.MaxValue = Math.Max(1, bytes(result));
                task.Value = task.MaxValue;
                return result;
            });
    }

    /// <summary>
    /// An explicit --out, checked as every command's is (<see cref="OutputFolder"/>); without one the files go to
    /// $MEDFORMER_HOME, the program's own cache (null).
    /// </summary>
    static OutputFolder? ClaimOut(ParseResult parse, Option<string?> output, Option<bool> force) =>
        parse.GetValue(output) is { } path ? OutputFolder.Claim(path, "download", parse.GetValue(force)) : null;

    static string Megabytes(long bytes) => (bytes / 1e6).ToString("0.0");
}
