using System.CommandLine;
using Medformer.Runtime;

namespace Medformer.Cli;

/// <summary>--force and the --out check the commands that write an output folder share (the policy: <see cref="OutputFolder"/>).</summary>
static class OutputOption
{
    /// <summary>What --out's description ends with, the same for every command.</summary>
    public const string Rule = $"It must be missing, empty or this command's earlier output (it holds {OutputFolder.MarkerFile}); else see --force.";

    public static Option<bool> Force() => new("--force")
    {
        Description =
            "Write into a non-empty --out this command did not create: its files are added (same-named ones overwritten) and nothing else there is removed. "
                      + "The working folder, its ancestors, the home folder and / are refused even so.",
    };

    /// <summary>The --out of <paramref name="command"/>, checked before anything is written (a refusal exits with 2).</summary>
    public static OutputFolder Claim(ParseResult parse, Option<string> output, Option<bool> force, string command) =>
        OutputFolder.Claim(parse.GetValue(output)!, command, parse.GetValue(force));
}
