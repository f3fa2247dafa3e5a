using System.Collections;
using System.Security.Cryptography;
using System.Text;

namespace Medformer.Runtime.Distributed;

/// <summary>
/// The per-job secret that the ranks prove to rank 0's store (and the store to them) before it serves them:
/// MEDFORMER_STORE_SECRET, else the contents of the file MEDFORMER_STORE_SECRET_FILE names (readable by its owner
/// only). <see cref="LocalLauncher"/> makes a random one for a one-node job; a multi-node job must be given one.
/// </summary>
public static class StoreSecret
{
    public const string Variable = "MEDFORMER_STORE_SECRET", FileVariable = "MEDFORMER_STORE_SECRET_FILE";

    /// <summary>Short secrets are guessable offline from one recorded handshake.</summary>
    public const int MinimumLength = 16;

    /// <summary>Files that large are not a secret but a mistake (a data file named by accident).</summary>
    const int MaximumLength = 4096;

    /// <summary>A fresh random secret for one job (256 bits, hex).</summary>
    public static string Generate() => Convert.ToHexString(RandomNumberGenerator.GetBytes(32));

    /// <summary>Whether the environment names a secret (the variable or the file), without reading it.</summary>
    public static bool IsConfigured(IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        return environment[Variable] is string { Length: > 0 } || environment[FileVariable] is string { Length: > 0 };
    }

    /// <summary>
    /// The job's secret. Without one, a job whose rank 0 is on this machine's loopback runs with an empty secret
    /// (torchrun's one-node jobs set nothing; every local user could join such a store, as they could PyTorch's);
    /// any other job is refused.
    /// </summary>
    public static byte[] Resolve(bool loopback, IDictionary? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariables();
        byte[] secret;
        if (environment[Variable] is string { Length: > 0 } text) secret = Encoding.UTF8.GetBytes(text);
        else if (environment[FileVariable] is string { Length: > 0 } path) secret = ReadFile(path);
        else if (loopback) return [];
        else throw new
            DistributedException($"a multi-node job needs a shared secret for its rendezvous store: set {Variable} (e.g. to `openssl rand -hex 32`) or " +
                $"{FileVariable} to a file only you can read, the same on every node");
        if (secret.Length < MinimumLength)
            throw new DistributedException($"the store secret ({(environment[Variable] is string { Length: > 0 } ? Variable : FileVariable)}) has " +
                $"{secret.Length} bytes; it needs at least {MinimumLength} (e.g. `openssl rand -hex 32`)");
        return secret;
    }

    static byte[] ReadFile(string path)
    {
        if (!File.Exists(path)) throw new DistributedException($"{FileVariable}={path}: no such file");
        if (!OperatingSystem.IsWindows())
        {
            const UnixFileMode others = UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead |
                UnixFileMode.OtherWrite | UnixFileMode.OtherExecute;
            var mode = File.GetUnixFileMode(path);
            if ((mode & others) != 0)
                throw new DistributedException($"{FileVariable}={path} can be read or written by group or others (mode " +
                    $"{Convert.ToString((int)mode, 8)}); run chmod 600 {path}");
        }
        if (new FileInfo(path).Length > MaximumLength) throw new DistributedException($"{FileVariable}={path} is over {MaximumLength} bytes: not a secret");
        // A trailing newline is what `echo`/`openssl rand -hex 32 > file` leave; it is not part of the secret.
        return Encoding.UTF8.GetBytes(File.ReadAllText(path).TrimEnd('\r', '\n'));
    }
}
