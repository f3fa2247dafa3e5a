namespace Medformer.Runtime;

/// <summary>Where downloads, unpacked arrays and the phantom corpus live: <c>$MEDFORMER_HOME</c>, else <c>~/.cache/medformer</c>.</summary>
public static class MedformerHome
{
    public const string Variable = "MEDFORMER_HOME";

    public static string Path => Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } home
        ? System.IO.Path.GetFullPath(home)
        : System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "medformer");
}
