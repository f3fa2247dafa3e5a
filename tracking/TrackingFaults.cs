namespace Medformer.Tracking;

/// <summary>
/// Failures of tracking's own writes while a run trains (a full disk, an unwritable spool file, a store that went
/// away): the first is reported in one line, later ones are counted for the run's end, and none reaches the caller,
/// so tracking never stops training. Reporting itself cannot throw.
/// </summary>
sealed class TrackingFaults(Action<string>? warn)
{
    int count;
    string? first;

    public int Count => Volatile.Read(ref count);

    /// <summary>The first failure, as "what: why".</summary>
    public string? First => Volatile.Read(ref first);

    /// <summary>
    /// Runs <paramref name="write"/>; a failure is reported (the first) or counted, never thrown. An ArgumentException
    /// is the caller's mistake found before anything was written (a key that clashes with another), and is thrown.
    /// </summary>
    public bool Run(string what, Action write)
    {
        try
        {
            write();
            return true;
        }
        catch (Exception e) when (e is not (OutOfMemoryException or ArgumentException))
        {
            Report(what, e);
            return false;
        }
    }

    public void Report(string what, Exception e)
    {
        if (Interlocked.Increment(ref count) != 1) return;
        string reason = e.Message.Split('\n')[0];
        Volatile.Write(ref first, $"{what}: {reason}");
        try
        {
            warn?.Invoke($"mlflow: could not {what} ({reason}); training goes on, and later tracking failures are counted at the end");
        }
        catch (Exception)
        {
            // A closed or full stderr: the failure is still counted and named in the run's outcome.
        }
    }

    /// <summary>The outcome's error line for the failures, or null when there were none.</summary>
    public string? Summary => Count == 0 ? null : $"{Count} tracking write(s) failed; the first: {First}";
}
