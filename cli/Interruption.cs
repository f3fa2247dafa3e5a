using System.Runtime.InteropServices;

namespace Medformer.Cli;

/// <summary>
/// Ctrl-C (SIGINT) and SIGTERM (what Slurm and Kubernetes send before they kill a job) ask a training command to
/// stop at the next step boundary, after writing that step's checkpoint; the command then exits 130 or 143, as a
/// shell reports a process ended by the signal. A second signal ends the process at once.
/// </summary>
sealed class Interruption : IDisposable
{
    readonly CancellationTokenSource source = new();
    readonly PosixSignalRegistration[] registrations;
    int signal;

    public Interruption()
    {
        registrations = [PosixSignalRegistration.Create(PosixSignal.SIGINT, Handle), PosixSignalRegistration.Create(PosixSignal.SIGTERM, Handle)];
    }

    public CancellationToken Token => source.Token;

    /// <summary>128 + the signal's number: 130 after SIGINT, 143 after SIGTERM.</summary>
    public int ExitCode => 128 + (signal == 0 ? 2 : signal);

    /// <summary>"SIGINT" or "SIGTERM", or null before a signal.</summary>
    public string? Signal => signal switch { 2 => "SIGINT", 15 => "SIGTERM", _ => null };

    void Handle(PosixSignalContext context)
    {
        int number = context.Signal == PosixSignal.SIGTERM ? 15 : 2;
        if (Interlocked.CompareExchange(ref signal, number, 0) != 0) return;  // the second: the default action ends the process
        context.Cancel = true;
        source.Cancel();
    }

    public void Dispose()
    {
        foreach (var registration in registrations) registration.Dispose();
        source.Dispose();
    }
}
