using System.CommandLine;
using System.Text.Json;
using Medformer.Heads;
using Medformer.Runtime;
using TorchSharp;

namespace Medformer.Cli;

/// <summary>The <c>medformer</c> command line: parsing and wiring only.</summary>
public static class MedformerCommand
{
    public static int Run(string[] args)
    {
        // "A folder or a hub name" (finetune, predict): names resolve through the checkpoint hub.
        Pretrained.NameResolver = DownloadCommand.ResolveHubName;
        var root = new RootCommand("Medformer: a Perceiver IO foundation model for medical images, on TorchSharp.");
        root.Subcommands.Add(PretrainCommand.Create());
        root.Subcommands.Add(FinetuneCommand.Create());
        root.Subcommands.Add(PredictCommand.Create());
        root.Subcommands.Add(Info());
        root.Subcommands.Add(InspectCommand.Create());
        root.Subcommands.Add(DownloadCommand.Create());
        root.Subcommands.Add(ExportCommand.Create());
        root.Subcommands.Add(ImportCommand.Create());
        root.Subcommands.Add(RunsCommand.Create());
        root.Subcommands.Add(EvaluateCommand.Create());
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // System.CommandLine would print every error and the whole help and exit 1: one line, exit 2.
            Console.Error.WriteLine("medformer: " + OneLine(parsed));
            return ExitCodes.BadArguments;
        }
        // Every command's errors end here as one line and an exit status (ExitCodes); the default handler would print a stack trace.
        return ExitCodes.Run(Who(parsed), () => parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false }));
    }

    /// <summary>"medformer pretrain", "medformer runs list": the command an error line names.</summary>
    static string Who(ParseResult parsed)
    {
        var path = new List<string>();
        for (var result = parsed.CommandResult; result is not null; result = result.Parent as System.CommandLine.Parsing.CommandResult)
            path.Insert(0, result.Command is RootCommand ? "medformer" : result.Command.Name);
        return string.Join(' ', path);
    }

    /// <summary>
    /// The parse error in one line, with the nearest known name for a typo: "unknown option '--max-step'; did you
    /// mean --max-steps? (medformer pretrain --help)". Later errors are usually its consequences (the stray value).
    /// </summary>
    static string OneLine(ParseResult parsed)
    {
        var command = parsed.CommandResult.Command;
        string help = $"({Who(parsed)} --help)";
        if (parsed.UnmatchedTokens.FirstOrDefault() is { } token)
        {
            bool option = token.StartsWith('-');
            var names = option
                ? command.Options.SelectMany(o => o.Aliases.Append(o.Name)).Where(n => n.StartsWith("--", StringComparison.Ordinal))
                : command.Subcommands.Select(c => c.Name);
            var nearest = names.Distinct().Select(n => (Name: n, Distance: Distance(token, n))).Where(c => c.Distance <= Math.Max(2, token.Length / 3))
                .OrderBy(c => c.Distance).ThenBy(c => c.Name, StringComparer.Ordinal).Take(3).Select(c => c.Name).ToList();
            string what = option ? "option" : command.Subcommands.Count > 0 ? "command" : "argument";
            return $"unknown {what} '{token}'{(nearest.Count > 0 ? $"; did you mean {string.Join(" or ", nearest)}?" : "")} {help}";
        }
        return $"{parsed.Errors[0].Message.Split('\n')[0].Trim()} {help}";
    }

    /// <summary>Levenshtein distance, for suggestions.</summary>
    static int Distance(string a, string b)
    {
        var row = Enumerable.Range(0, b.Length + 1).ToArray();
        for (int i = 1; i <= a.Length; i++)
        {
            int diagonal = row[0];
            row[0] = i;
            for (int j = 1; j <= b.Length; j++)
            {
                int above = row[j];
                row[j] = Math.Min(Math.Min(row[j] + 1, row[j - 1] + 1), diagonal + (a[i - 1] == b[j - 1] ? 0 : 1));
                diagonal = above;
            }
        }
        return row[b.Length];
    }

    static Command Info()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var config = new Option<string?>("--config") { Description = "A preset (tiny, small, base, large) or a config.json: report its parameters and FLOPs." };
        var input = new Option<string>("--input") { Description = "Input size for the FLOP count: HxW or DxHxW.", DefaultValueFactory = _ => "28x28" };
        var queries = new Option<long>("--queries") { Description = "Decoder queries per sample for the FLOP count.", DefaultValueFactory = _ => 0 };
        var command = new Command("info", "What this build and machine offer, or with --config, a model's parameters and FLOPs.");
        command.Options.Add(json);
        command.Options.Add(config);
        command.Options.Add(input);
        command.Options.Add(queries);
        command.SetAction(parse =>
        {
            TorchRuntime.EnsureLoaded();
            var info = parse.GetValue(config) is { } name
                ? ModelInfo(name, ParseSize(parse.GetValue(input)!), parse.GetValue(queries))
                : RuntimeInfo();
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(info));
            else
            {
                int width = info.Keys.Max(k => k.Length) + 2;
                foreach (var (key, value) in info) Console.WriteLine($"{key.PadRight(width)}{Humanise(key, value)}");
            }
            return 0;
        });
        return command;
    }

    /// <summary>Counts as a person reads them: 6.55 M parameters, 0.548 GFLOP; --json keeps the exact numbers.</summary>
    static string Humanise(string key, object value)
    {
        if (value is not (long or int or double)) return Convert.ToString(value, System.Globalization.CultureInfo.InvariantCulture) ?? "";
        double n = Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture);
        if (key.Contains("flops", StringComparison.Ordinal)) return n == 0 ? "0" :
            $"{(n / 1e9).ToString("0.###", System.Globalization.CultureInfo.InvariantCulture)} GFLOP";
        return n >= 1e6 ? $"{(n / 1e6).ToString("0.##", System.Globalization.CultureInfo.InvariantCulture)} M" : n >= 1e4
            ? $"{(n / 1e3).ToString("0.#", System.Globalization.CultureInfo.InvariantCulture)} k"
                : n.ToString(System.Globalization.CultureInfo.InvariantCulture);
    }

    static Dictionary<string, object> RuntimeInfo() => new()
    {
        ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "?",
        // The build's rewrite of TorchSharp.dll (runtime/build/KeepAlive): without it, implicit Scalars can be freed mid-call.
        ["torchsharp_keepalive"] = TorchRuntime.KeepAliveMarker ?? "no (stock TorchSharp.dll: rebuild with ./medformer)",
        ["cuda_available"] = torch.cuda.is_available(),
        ["cuda_devices"] = torch.cuda.is_available() ? torch.cuda.device_count() : 0,
        ["threads"] = TorchRuntime.Threads,
        ["cpu"] = CpuFeatures.ModelName,
        ["cpu_bf16"] = CpuFeatures.HasFastBf16,
    };

    static Dictionary<string, object> ModelInfo(string name, long[] size, long queries)
    {
        var config = MedformerConfig.Resolve(name);
        using var model = new MedformerModel(config);
        var flops = ModelFlops.Forward(config, size, queries);
        return new()
        {
            ["config"] = name,
            ["parameters"] = model.ParameterCount(),
            ["input"] = string.Join('x', size),
            ["tokens"] = flops.Tokens,
            ["latents"] = flops.Latents,
            ["queries"] = flops.Queries,
            ["forward_flops"] = flops.Total,
            ["forward_flops_tokenizer"] = flops.Tokenizer,
            ["forward_flops_encoder_cross_attention"] = flops.EncoderCrossAttention,
            ["forward_flops_self_attention"] = flops.SelfAttention,
            ["forward_flops_decoder"] = flops.Decoder,
        };
    }

    static long[] ParseSize(string text)
    {
        var parts = text.Split('x');
        var size = new long[parts.Length];
        for (int i = 0; i < parts.Length; i++)
            if (!long.TryParse(parts[i], out size[i]) || size[i] <= 0)
                throw new ArgumentException($"--input '{text}': expected HxW or DxHxW with positive integers, as 28x28 or 64x64x64.");
        if (size.Length is not (2 or 3)) throw new ArgumentException($"--input '{text}': expected HxW or DxHxW.");
        return size;
    }
}
