using System.CommandLine;
using System.Text.Json;
using Medformer.Runtime;
using TorchSharp;

namespace Medformer.Cli;

/// <summary>The <c>medformer</c> command line: parsing and wiring only.</summary>
public static class MedformerCommand
{
    public static int Run(string[] args)
    {
        var root = new RootCommand("Medformer: a Perceiver IO foundation model for medical images, on TorchSharp.");
        root.Subcommands.Add(Pretrain());
        root.Subcommands.Add(Info());
        try
        {
            // Our handlers below say what went wrong in one line; the default handler would print a stack trace.
            return root.Parse(args).Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (TorchLoadException e)
        {
            Console.Error.WriteLine("medformer: " + e.Message);
            return 3;
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("medformer: " + e.Message);
            return 2;
        }
    }

    static Command Pretrain()
    {
        var command = new Command("pretrain", "Self-supervised pretraining (the main job).");
        command.SetAction(_ =>
        {
            Console.Error.WriteLine("medformer pretrain: not there yet. Pretraining comes with issue 13 (objectives, trainer, main job); this build has the runtime layer only.");
            return 2;
        });
        return command;
    }

    static Command Info()
    {
        var json = new Option<bool>("--json") { Description = "Print one JSON object." };
        var command = new Command("info", "What this build and machine offer: TorchSharp, libtorch, devices, threads, precision.");
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            TorchRuntime.EnsureLoaded();
            var info = new Dictionary<string, object>
            {
                ["torchsharp"] = typeof(torch).Assembly.GetName().Version?.ToString(3) ?? "?",
                ["cuda_available"] = torch.cuda.is_available(),
                ["cuda_devices"] = torch.cuda.is_available() ? torch.cuda.device_count() : 0,
                ["threads"] = TorchRuntime.Threads,
                ["cpu"] = CpuFeatures.ModelName,
                ["cpu_bf16"] = CpuFeatures.HasFastBf16,
            };
            if (parse.GetValue(json))
                Console.WriteLine(JsonSerializer.Serialize(info));
            else
                foreach (var (key, value) in info) Console.WriteLine($"{key,-15} {value}");
            return 0;
        });
        return command;
    }
}
