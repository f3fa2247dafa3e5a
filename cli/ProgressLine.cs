using System.Globalization;
using Medformer.Training;

namespace Medformer.Cli;

/// <summary>A progress bar redrawn in place on a terminal; a plain line per log step when the output is a file or pipe.</summary>
sealed class ProgressLine(bool plain, string command, TextWriter? output = null)
{
    readonly TextWriter writer = output ?? Console.Out;
    bool drawn;

    public void Show(TrainerLog log)
    {
        var inv = CultureInfo.InvariantCulture;
        string parts = string.Join(" ", log.Parts.OrderBy(p => p.Key).Select(p => $"{p.Key} {p.Value.ToString("F4", inv)}"));
        string text =
            $"step {log.Step}/{log.MaxSteps}  loss {log.Loss.ToString("F4", inv)}{(parts.Length > 0 ? $" ({parts})" : "")}  lr " +
                $"{log.LearningRate.ToString("0.00e0", inv)}  " +
                $"{log.SamplesPerSecond.ToString("F0", inv)} samples/s"
            + (log.BatchSize is { } batch ? $"  batch {batch.ToString("F1", inv)} selected {log.SelectedSize!.Value.ToString("F1", inv)}" : "");
        if (plain)
        {
            writer.WriteLine($"{text}  elapsed {log.Elapsed:hh\\:mm\\:ss}  eta {log.Remaining:hh\\:mm\\:ss}");
            return;
        }
        const int width = 24;
        int filled = (int)(width * log.Step / Math.Max(1, log.MaxSteps));
        string bar = new string('█', filled) + new string('░', width - filled);
        writer.Write($"\r\x1b[2K{bar} {text}  eta {log.Remaining:hh\\:mm\\:ss}");
        drawn = true;
    }

    public void Notice(string message)
    {
        Done();
        Console.Error.WriteLine($"{command}: {message}");
    }

    public void Done()
    {
        if (!drawn) return;
        writer.WriteLine();
        drawn = false;
    }
}
