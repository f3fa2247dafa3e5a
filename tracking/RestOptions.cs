using System.Globalization;

namespace Medformer.Tracking;

/// <summary>
/// How the REST client talks to a tracking server. Credentials come from MLflow's variables:
/// <c>MLFLOW_TRACKING_TOKEN</c> (a Bearer token), else <c>MLFLOW_TRACKING_USERNAME</c> and
/// <c>MLFLOW_TRACKING_PASSWORD</c> (basic auth); <c>MLFLOW_TRACKING_INSECURE_TLS=true</c> skips certificate checks.
/// </summary>
public sealed record RestOptions
{
    /// <summary>One request's limit (an artifact upload gets one more second per MB).</summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The first wait after a failed send; it doubles after each failure up to <see cref="MaxBackoff"/>.</summary>
    public TimeSpan FirstBackoff { get; init; } = TimeSpan.FromMilliseconds(500);

    public TimeSpan MaxBackoff { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long the end of a run waits for the queue to drain before leaving the rest in the spool file (MEDFORMER_TRACKING_FLUSH_SECONDS, default
    /// 30).</summary>
    public TimeSpan FlushTimeout { get; init; } = TimeSpan.FromSeconds(
        double.TryParse(Environment.GetEnvironmentVariable("MEDFORMER_TRACKING_FLUSH_SECONDS"), NumberStyles.Float, CultureInfo.InvariantCulture,
            out double s) && s >= 0 ? s : 30);

    /// <summary>Points gather this long (or up to a full batch) before a log-batch call.</summary>
    public TimeSpan SendInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Attempts of a read (runs list/show/compare) before its error is shown.</summary>
    public int ReadAttempts { get; init; } = 4;

    public string? Token { get; init; } = Environment.GetEnvironmentVariable("MLFLOW_TRACKING_TOKEN");
    public string? Username { get; init; } = Environment.GetEnvironmentVariable("MLFLOW_TRACKING_USERNAME");
    public string? Password { get; init; } = Environment.GetEnvironmentVariable("MLFLOW_TRACKING_PASSWORD");
    public bool InsecureTls { get; init; } = Environment.GetEnvironmentVariable("MLFLOW_TRACKING_INSECURE_TLS")?.ToLowerInvariant() is "true" or "1";

    /// <summary>The next wait after <paramref name="wait"/>: doubled, capped, with up to 20% jitter so clients spread out.</summary>
    public TimeSpan NextBackoff(TimeSpan wait) =>
        TimeSpan.FromTicks((long)(Math.Min(wait.Ticks * 2, MaxBackoff.Ticks) * (0.8 + 0.2 * Random.Shared.NextDouble())));
}
