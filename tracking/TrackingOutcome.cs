namespace Medformer.Tracking;

/// <summary>
/// How a run's logging ended: where it went, and what did not reach the server (<see cref="Unsent"/> entries, kept
/// in <see cref="SpoolFile"/> for <c>medformer runs replay</c>), with the errors met on the way.
/// </summary>
public sealed record TrackingOutcome(string Location, string? RunId, int Unsent, string? SpoolFile, IReadOnlyList<string> Errors)
{
    public bool Complete => Unsent == 0 && Errors.Count == 0;

    /// <summary>One line for the user, or null when all went well.</summary>
    public string? Warning => Complete ? null
        : $"{Unsent} logged entr{(Unsent == 1 ? "y" : "ies")} did not reach {Location}{(Errors.Count > 0 ? $" ({Errors[^1]})" : "")}"
          + (SpoolFile is null ? "" : $"; kept in {SpoolFile}; send them with: medformer runs replay {SpoolFile} --tracking-uri {Location}");
}
