namespace Medformer.Tracking;

/// <summary>
/// A failed call to the tracking server: the HTTP status (0 when no answer came) and MLflow's error code
/// (<c>RESOURCE_ALREADY_EXISTS</c>, <c>INVALID_PARAMETER_VALUE</c>, …). Worth retrying: no answer, 429 and 5xx.
/// </summary>
public sealed class MlflowRestException(int status, string? errorCode, string message, Exception? inner = null) : Exception(message, inner)
{
    public int Status { get; } = status;

    public string? ErrorCode { get; } = errorCode;

    public bool Retryable => Status is 0 or 408 or 429 or >= 500;
}
