using Medformer.Runtime;
using Medformer.Runtime.Distributed;
using Medformer.Tracking;
using Medformer.Training;

namespace Medformer.Cli;

/// <summary>
/// Every command's exit status, in one place: 0 done; 1 a bad input file or a failed run (a file that is not what
/// it claims, a run that diverged, a rank or tracking server that failed); 2 bad arguments (parse errors too); 3
/// TorchSharp cannot load; 128 + N after signal N (130 Ctrl-C, 143 SIGTERM: see <see cref="Interruption"/>). An error
/// is one line on stderr, <c>medformer COMMAND: message</c>; MEDFORMER_DEBUG=1 shows where it came from, for bug reports.
/// </summary>
static class ExitCodes
{
    public const int Done = 0;
    public const int Failed = 1;
    public const int BadArguments = 2;
    public const int TorchUnavailable = 3;

    /// <summary>The status an error means; null for one that is a bug (it stays unhandled, with its stack).</summary>
    public static int? Of(Exception e) => e switch
    {
        TorchLoadException => TorchUnavailable,
        ArgumentException => BadArguments,
        // IOException covers the missing file and the failed download (DownloadException). NotSupportedException,
        // OverflowException and KeyNotFoundException are what readers of hostile files throw for a format they do not
        // take, sizes past any memory, an array the file lacks.
        InvalidDataException or IOException or UnauthorizedAccessException or NotSupportedException or OverflowException or KeyNotFoundException
            or SafetensorsException or TrainingDivergedException or DistributedException or MlflowRestException => Failed,
        _ => null,
    };

    /// <summary>An error that ends a run as failed (status 1), for commands that end their tracking run on it.</summary>
    public static bool IsFailure(Exception e) => Of(e) == Failed;

    /// <summary>
    /// Reads a file the command line names (a config, a manifest, a spool file): one that is missing or malformed is
    /// a bad argument (2), not a failed run. A download that fails on the way stays a failure (1).
    /// </summary>
    public static T NamedByArgument<T>(Func<T> read)
    {
        try
        {
            return read();
        }
        catch (Exception e) when (IsMissingOrMalformed(e))
        {
            throw new ArgumentException(e.Message, e);
        }
    }

    /// <inheritdoc cref="NamedByArgument{T}(Func{T})"/>
    public static async Task<T> NamedByArgument<T>(Func<Task<T>> read)
    {
        try
        {
            return await read();
        }
        catch (Exception e) when (IsMissingOrMalformed(e))
        {
            throw new ArgumentException(e.Message, e);
        }
    }

    static bool IsMissingOrMalformed(Exception e) => e is InvalidDataException or FileNotFoundException or DirectoryNotFoundException;

    /// <summary>Runs a command's action; an error <see cref="Of"/> knows becomes its one line and status.</summary>
    /// <param name="who">"medformer pretrain", "medformer runs list": what the line starts with.</param>
    public static int Run(string who, Func<int> action)
    {
        try
        {
            return action();
        }
        catch (Exception e) when (Of(e) is not null)
        {
            return Report(who, e);
        }
    }

    /// <summary>Says <paramref name="e"/> in one line (the stack with MEDFORMER_DEBUG=1) and returns its status.</summary>
    public static int Report(string who, Exception e)
    {
        // One line: some messages (SQLite's, the OS's) carry a second line of detail.
        Console.Error.WriteLine($"{who}: {(Debug ? e.ToString() : e.Message.Split('\n')[0].TrimEnd())}");
        return Of(e) ?? Failed;
    }

    static bool Debug => Environment.GetEnvironmentVariable("MEDFORMER_DEBUG") == "1";
}
