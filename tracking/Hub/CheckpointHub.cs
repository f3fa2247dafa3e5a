using System.Text.Json;
using Medformer.Runtime;
using Medformer.Runtime.Net;

namespace Medformer.Tracking.Hub;

/// <summary>What <see cref="CheckpointHub.FetchAsync"/> did.</summary>
/// <param name="ModelFolder">config.json + model.safetensors, ready for Checkpoint.Load.</param>
/// <param name="Download">The transfer, or null when the model was already in the cache.</param>
public sealed record HubFetch(string ModelFolder, string Sha256, DownloadOutcome Outcome, DownloadResult? Download);

/// <summary>
/// The checkpoint cache in <c>$MEDFORMER_HOME/hub</c>: <c>NAME/SHA256/model/</c> holds an unpacked model folder;
/// while it downloads, <c>NAME/SHA256/FILE.part</c> holds what came so far (a later run resumes it). Safe for
/// processes that share the cache: each entry has a lock file (<c>NAME/SHA256/.lock</c>, an exclusive lock the
/// kernel drops when its process dies), so a second process asking for the same checkpoint waits, then finds it in
/// place. The model folder appears by one rename after the archive is verified and unpacked (
/// <see cref="AtomicDirectory"/>), so it is whole or absent; a cut download or a wrong checksum leaves only the
/// .part (or nothing). The folders are the user's alone (mode 0700); each model folder records its files' sizes,
/// times and SHA-256 (<see cref="CacheDigests"/>), checked before it is used.
/// </summary>
public sealed class CheckpointHub(string home)
{
    public const string ModelFolderName = "model";
    const string Unverified = ".unverified";

    /// <summary>The hub in <see cref="MedformerHome.Path"/>.</summary>
    public static CheckpointHub Default => new(MedformerHome.Path);

    public string Root { get; } = Path.Combine(Path.GetFullPath(home), "hub");

    public string EntryFolder(HubEntry entry, string sha256) => Path.Combine(Root, entry.Name, sha256);

    /// <summary>
    /// The entry's model folder, downloaded, verified and unpacked if it is not in the cache yet.
    /// <paramref name="configJson"/> turns a manifest's config (a preset name or an object) into config.json text,
    /// for a bare .safetensors download or an archive without config.json.
    /// </summary>
    /// <param name="verify">Hash a cached model folder's files against the digests recorded when it was unpacked
    /// (and fetch it again if they differ); otherwise only their sizes and times are compared, and a folder changed
    /// since is an error.</param>
    public async Task<HubFetch> FetchAsync(HubEntry entry, DownloadOptions options, Func<JsonElement, string>? configJson = null,
        CancellationToken cancellation = default, bool verify = false)
    {
        if (entry.Sha256 is not { } sha256) return await FetchUnverifiedAsync(entry, options, configJson, cancellation);
        string folder = EntryFolder(entry, sha256);
        using var hold = await LockAsync(folder, entry.Name, options, cancellation);
        string model = Path.Combine(folder, ModelFolderName);
        if (IsWhole(model) && Intact(entry, model, verify, options))
        {
            options.Log?.Invoke($"{entry.Name}: in the cache at {model} (SHA-256 {sha256}{(verify ? ", every file verified" : "")})");
            return new HubFetch(model, sha256, DownloadOutcome.AlreadyPresent, null);
        }
        string archive = Path.Combine(folder, entry.FileName);
        var result = await Download.FetchAsync(entry.Url, archive, Checksum.Sha256(sha256), entry.Size, options, cancellation);
        Install(entry, archive, model, configJson);
        return new HubFetch(model, sha256, DownloadOutcome.Downloaded, result);
    }

    // A URL with no checksum: downloaded into NAME/.unverified, then filed under the SHA-256 it turned out to have.
    async Task<HubFetch> FetchUnverifiedAsync(HubEntry entry, DownloadOptions options, Func<JsonElement, string>? configJson, CancellationToken cancellation)
    {
        string staging = Path.Combine(Root, entry.Name, Unverified);
        DownloadResult result;
        string mine;
        using (await LockAsync(staging, entry.Name, options, cancellation))
        {
            string archive = Path.Combine(staging, entry.FileName);
            result = await Download.FetchAsync(entry.Url, archive, checksum: null, options: options, cancellation: cancellation);
            // Moved out while the lock is held: the next process's download would replace it.
            string folder = EntryFolder(entry, result.Digest);
            CreatePrivate(folder);
            mine = Path.Combine(folder, $"{entry.FileName}.{Guid.NewGuid():N}");
            File.Move(archive, mine);
        }
        options.Log?.Invoke($"{entry.Name}: not verified (no SHA-256 given); its SHA-256 is {result.Digest}");
        string model = Path.Combine(Path.GetDirectoryName(mine)!, ModelFolderName);
        using (await LockAsync(Path.GetDirectoryName(mine)!, entry.Name, options, cancellation))
        {
            if (!IsWhole(model) || CacheDigests.Check(model, full: false) != null) Install(entry, mine, model, configJson);
            else File.Delete(mine);
        }
        return new HubFetch(model, result.Digest, DownloadOutcome.Downloaded, result);
    }

    static void Install(HubEntry entry, string archive, string model, Func<JsonElement, string>? configJson)
    {
        try
        {
            AtomicDirectory.Write(model, staging =>
            {
                PackedModel.Unpack(archive, staging);
                string config = Path.Combine(staging, PackedModel.ConfigFile);
                if (!File.Exists(config))
                {
                    if (entry.Config is not { } given || configJson == null)
                        throw new InvalidDataException($"{entry.Url}: holds no {PackedModel.ConfigFile} and the manifest gives no config for '{entry.Name}'");
                    File.WriteAllText(config, configJson(given));
                }
                CacheDigests.Record(staging);
            });
        }
        finally
        {
            // Unpacked, its bytes live in the model folder (whose presence marks the entry whole); unusable, it goes too.
            File.Delete(archive);
        }
    }

    static bool IsWhole(string model) =>
        File.Exists(Path.Combine(model, PackedModel.WeightsFile)) && File.Exists(Path.Combine(model, PackedModel.ConfigFile));

    // A cached folder as it was verified. Changed, it is an error (nothing says which bytes are right) unless
    // verify hashes it: the same digests refresh the record (a touched file), others send it to be fetched again.
    static bool Intact(HubEntry entry, string model, bool verify, DownloadOptions options)
    {
        if (!File.Exists(Path.Combine(model, CacheDigests.FileName)))
        {
            // Unpacked by a medformer before the record existed: nothing to check it against, so it is fetched again.
            options.Log?.Invoke($"{model}: has no record of its files ({CacheDigests.FileName}); fetching '{entry.Name}' again");
            Directory.Delete(model, recursive: true);
            return false;
        }
        string? changed = CacheDigests.Check(model, full: false);
        if (changed == null && !verify) return true;
        if (!verify)
            throw new InvalidDataException($"{changed}; the cached '{entry.Name}' changed since it was verified: `medformer download {entry.Name} --verify` " +
                "checks it (and fetches it again if it differs)");
        if (CacheDigests.Check(model, full: true) is not { } differs)
        {
            if (changed != null) CacheDigests.Record(model);
            return true;
        }
        options.Log?.Invoke($"{differs}: fetching '{entry.Name}' again");
        Directory.Delete(model, recursive: true);
        return false;
    }

    // Only the user may read or change the cache: it holds what was verified, and the lock files.
    static void CreatePrivate(string folder)
    {
        if (Directory.Exists(folder)) return;
        string? parent = Path.GetDirectoryName(folder);
        if (parent != null && !Directory.Exists(parent)) CreatePrivate(parent);
        if (OperatingSystem.IsWindows()) Directory.CreateDirectory(folder);
        else Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    // Waits as long as the holder runs: its own download is bounded by timeouts and retries.
    async Task<IDisposable> LockAsync(string folder, string name, DownloadOptions options, CancellationToken cancellation)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Root)!);
        CreatePrivate(folder);
        string path = Path.Combine(folder, ".lock");
        bool said = false;
        while (true)
        {
            try
            {
                // FileShare.None is an exclusive flock on Linux: held until disposed or the process ends.
                return new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
            }
            catch (IOException) when (File.Exists(path))
            {
                if (!said) options.Log?.Invoke($"{name}: another process is fetching it; waiting for it to finish");
                said = true;
                await Task.Delay(100, cancellation);
            }
        }
    }
}
