using System.IO.Compression;

namespace Medformer.Tracking.Hub;

/// <summary>
/// Unpacks a downloaded checkpoint into a folder: a .tar (plain or gzipped) or .zip of the model folder's files, or a
/// bare .safetensors file (which becomes model.safetensors). Only regular files, flat or under one top-level folder,
/// with plain names (<see cref="TarMembers"/> refuses links, devices and sparse files, and bounds PAX and GNU
/// long-name records); nothing is written outside the folder, and the bytes unpacked are bounded (64 times the
/// archive, counted as gzip produces them), so a hostile archive can neither fill the disk nor the memory.
/// </summary>
public static class PackedModel
{
    public const string WeightsFile = "model.safetensors";
    public const string ConfigFile = "config.json";

    public static void Unpack(string archive, string folder)
    {
        long budget = Math.Max(64 * new FileInfo(archive).Length, 1L << 20);
        using var stream = File.OpenRead(archive);
        Span<byte> head = stackalloc byte[264];
        int read = stream.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        stream.Position = 0;
        try
        {
            if (read >= 4 && head[..4].SequenceEqual("PK\u0003\u0004"u8))
                UnpackZip(stream, archive, folder, budget);
            else if (read >= 2 && head[0] == 0x1f && head[1] == 0x8b)
            {
                // Counted where gzip produces it: headers and padding too, not only the members' data.
                using var gzip = new LimitedReadStream(new GZipStream(stream, CompressionMode.Decompress), budget, archive);
                UnpackTar(gzip, archive, folder, budget);
            }
            else if (read >= 262 && head[257..262].SequenceEqual("ustar"u8))
                UnpackTar(stream, archive, folder, budget);
            else if (Interop.StateDictImport.LooksLikeSafetensors(stream))
            {
                using var output = File.Create(Path.Combine(folder, WeightsFile));
                stream.CopyTo(output);
            }
            else
                throw new InvalidDataException($"{archive}: neither a .tar, .tar.gz, .zip nor a .safetensors file");
        }
        catch (Exception e) when (e is InvalidDataException or EndOfStreamException or FormatException && !e.Message.StartsWith(archive,
            StringComparison.Ordinal))
        {
            throw new InvalidDataException($"{archive}: a damaged archive: {e.Message}", e);
        }
        if (!File.Exists(Path.Combine(folder, WeightsFile)))
            throw new InvalidDataException($"{archive}: holds no {WeightsFile} (found: " +
                $"{string.Join(", ", Directory.EnumerateFiles(folder).Select(Path.GetFileName))})");
    }

    static void UnpackTar(Stream stream, string archive, string folder, long budget)
    {
        var reader = new TarMembers(stream, archive);
        string? top = null;
        while (reader.Next() is { } member)
        {
            string target = Target(archive, folder, member.Name, ref top);
            budget -= member.Size;
            if (budget < 0) throw new InvalidDataException($"{archive}: unpacks to more than 64 times its size; refused");
            using var output = File.Create(target);
            reader.CopyData(output);
        }
    }

    static void UnpackZip(Stream stream, string archive, string folder, long budget)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Read);
        string? top = null;
        foreach (var entry in zip.Entries)
        {
            if (entry.FullName.EndsWith('/')) continue;
            string target = Target(archive, folder, entry.FullName, ref top);
            using var input = entry.Open();
            using var output = File.Create(target);
            budget = CopyBounded(input, output, budget, archive);
        }
    }

    // The member's file name in the folder: "name" or "top/name" with one top-level folder for all members.
    static string Target(string archive, string folder, string member, ref string? top)
    {
        var parts = member.Replace('\\', '/').Split('/', StringSplitOptions.RemoveEmptyEntries).Where(p => p != ".").ToArray();
        string name = parts.Length switch
        {
            1 when top is null or "" => parts[0],
            2 when top == null || top == parts[0] => parts[1],
            _ => throw new InvalidDataException($"{archive}: member '{member}' is not a file of the model folder (files sit at the top or in one folder)"),
        };
        top ??= parts.Length == 2 ? parts[0] : "";
        if (!HubManifest.IsSafeName(name) || name.StartsWith('.'))
            throw new InvalidDataException($"{archive}: member '{member}' has a name that is not allowed");
        string target = Path.Combine(folder, name);
        if (File.Exists(target)) throw new InvalidDataException($"{archive}: '{name}' appears twice");
        return target;
    }

    static long CopyBounded(Stream input, Stream output, long budget, string archive)
    {
        var buffer = new byte[1 << 20];
        int read;
        while ((read = input.Read(buffer)) > 0)
        {
            budget -= read;
            if (budget < 0) throw new InvalidDataException($"{archive}: unpacks to more than 64 times its size; refused");
            output.Write(buffer, 0, read);
        }
        return budget;
    }
}
