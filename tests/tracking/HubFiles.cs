using System.Formats.Tar;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using Medformer.Runtime;

namespace Medformer.Tests.Tracking;

/// <summary>A tiny model packed as the hub serves checkpoints, and manifests that list it.</summary>
sealed class HubFiles : IDisposable
{
    public string Folder { get; } = Directory.CreateTempSubdirectory("medformer-hub-").FullName;

    /// <summary>A MEDFORMER_HOME of its own.</summary>
    public string Home => Path.Combine(Folder, "home");

    /// <summary>The model folder that was packed.</summary>
    public string ModelFolder => Path.Combine(Folder, "tiny-model");

    public HubFiles()
    {
        Seeding.SeedEverything(4);
        using var model = new MedformerModel(MedformerConfig.Tiny);
        Checkpoint.Save(model, ModelFolder);
    }

    public void Dispose() => Directory.Delete(Folder, recursive: true);

    /// <summary>The model folder as a .tar (under one top-level folder, as `tar cf x.tar tiny-model/` makes) or a .zip of bare files.</summary>
    public byte[] Packed(string format)
    {
        string path = Path.Combine(Folder, "packed." + format);
        File.Delete(path);
        if (format == "zip") ZipFile.CreateFromDirectory(ModelFolder, path, CompressionLevel.Fastest, includeBaseDirectory: false);
        else TarFile.CreateFromDirectory(ModelFolder, path, includeBaseDirectory: true);
        return File.ReadAllBytes(path);
    }

    public byte[] Weights => File.ReadAllBytes(Path.Combine(ModelFolder, Checkpoint.WeightsFile));

    public static string Sha256(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    public static string Manifest(params object[] entries) => JsonSerializer.Serialize(new { format = 1, checkpoints = entries });

    public static object Entry(string name, Uri url, byte[] bytes, string? sha256 = null, object? config = null) =>
        config == null
            ? new { name, url = url.ToString(), size = bytes.Length, sha256 = sha256 ?? Sha256(bytes), description = "a test model" }
            : new { name, url = url.ToString(), size = bytes.Length, sha256 = sha256 ?? Sha256(bytes), config, description = "a test model" };
}
