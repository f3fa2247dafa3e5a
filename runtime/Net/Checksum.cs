using System.Security.Cryptography;

namespace Medformer.Runtime.Net;

/// <summary>The digest a downloaded file must have: MD5 (as MedMNIST publishes) or SHA-256 (the checkpoint hub).</summary>
public sealed record Checksum
{
    public HashAlgorithmName Algorithm { get; }

    /// <summary>The digest, lower-case hex.</summary>
    public string Hex { get; }

    Checksum(HashAlgorithmName algorithm, string hex, int digits)
    {
        hex = hex.ToLowerInvariant();
        if (hex.Length != digits || !hex.All(Uri.IsHexDigit))
            throw new ArgumentException($"{Name(algorithm)} '{hex}' is not {digits} hex digits", nameof(hex));
        Algorithm = algorithm;
        Hex = hex;
    }

    public static Checksum Md5(string hex) => new(HashAlgorithmName.MD5, hex, 32);

    public static Checksum Sha256(string hex) => new(HashAlgorithmName.SHA256, hex, 64);

    /// <summary>"MD5" or "SHA-256", as messages name it.</summary>
    public string Name() => Name(Algorithm);

    public override string ToString() => $"{Name()} {Hex}";

    internal static string Name(HashAlgorithmName algorithm) => algorithm == HashAlgorithmName.MD5 ? "MD5" : "SHA-256";

    /// <summary>A file's length and digest (lower-case hex) with <paramref name="algorithm"/>.</summary>
    public static async Task<(long Length, string Hex)> HashFileAsync(string path, HashAlgorithmName algorithm, CancellationToken cancellation = default)
    {
        await using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20, useAsync: true);
        using var hash = IncrementalHash.CreateHash(algorithm);
        var buffer = new byte[1 << 20];
        int read;
        while ((read = await stream.ReadAsync(buffer, cancellation)) > 0) hash.AppendData(buffer, 0, read);
        return (stream.Length, Convert.ToHexStringLower(hash.GetHashAndReset()));
    }
}
