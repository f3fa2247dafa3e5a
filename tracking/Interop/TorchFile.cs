using System.IO.Compression;
using System.Numerics;
using TorchSharp;
using static TorchSharp.torch;

namespace Medformer.Tracking.Interop;

/// <summary>
/// A file written by <c>torch.save</c>, read without Python: the zip format (PyTorch 1.6 and later: ARCHIVE/data.pkl,
/// ARCHIVE/data/KEY per storage, ARCHIVE/version) and the legacy format before it (magic, protocol and system-info
/// pickles, the object pickle, the storage keys, then each storage's length and bytes; files up to 2 GiB). The
/// object tree is read with <see cref="PickleReader"/>, so only a state_dict's kinds of object are accepted;
/// tensors stay <see cref="TorchTensorRef"/>s until <see cref="GetTensor"/> reads their storage, so a checkpoint's
/// optimizer state costs nothing unless asked for. Every storage's length is checked against the archive before
/// anything is allocated, a deflated member (TorchSharp.PyBridge writes them) is bounded like a storage, and the
/// bytes materialised (storages and the tensors handed out) stay within <see cref="Budget"/> of the file's length.
/// </summary>
public sealed class TorchFile : IDisposable
{
    const long MaxPickleBytes = 1L << 30;
    static readonly BigInteger LegacyMagic = BigInteger.Parse("119547037146038801333356");  // 0x1950a86a20f9469cfc6c

    readonly ZipArchive? zip;
    readonly string? dataPrefix;
    readonly byte[]? legacy;
    readonly Dictionary<string, TorchStorage> storages = [];
    readonly Dictionary<string, long> legacyOffsets = [];
    readonly Dictionary<string, Tensor> loaded = [];
    readonly long budget;
    long materialised;

    public string Path { get; }

    /// <summary>
    /// Bytes the reader may hold at once for storages and the tensors it hands out: a small multiple of the file's
    /// length. Views may share a storage, but a 1 MB file of many wide views must not cost gigabytes.
    /// </summary>
    public static long Budget(long fileLength) => 4 * fileLength + (16L << 20);

    /// <summary>Bytes of storages read and tensors handed out so far (never more than the budget).</summary>
    public long Materialised => materialised;

    /// <summary>The unpickled object: for a state_dict a <see cref="PickleDict"/> of names to <see cref="TorchTensorRef"/>.</summary>
    public object? Root { get; }

    /// <summary>"zip" or "legacy".</summary>
    public string Format => zip != null ? "zip" : "legacy";

    TorchFile(string path, ZipArchive? zip, byte[]? legacy, long fileLength)
    {
        Path = path;
        budget = Budget(fileLength);
        this.zip = zip;
        this.legacy = legacy;
        if (zip != null)
        {
            var pickles = zip.Entries.Where(e => e.FullName.EndsWith("/data.pkl", StringComparison.Ordinal) && e.FullName.Count(c => c == '/') == 1).ToList();
            if (pickles.Count != 1)
                throw new InvalidDataException($"{path}: a zip, but not one torch.save wrote (it has {pickles.Count} ARCHIVE/data.pkl entries, not 1)");
            var entry = pickles[0];
            dataPrefix = entry.FullName[..^"data.pkl".Length] + "data/";
            if (zip.GetEntry(entry.FullName[..^"data.pkl".Length] + "byteorder") is { } order && ReadText(order) != "little")
                throw new InvalidDataException($"{path}: storages are big-endian; only little-endian files are read");
            if (entry.Length > MaxPickleBytes)
                throw new InvalidDataException($"{path}: {entry.FullName} is {entry.Length} bytes, over the limit of {MaxPickleBytes}");
            CheckInflation(entry);
            var pickle = new byte[entry.Length];
            using (var stream = entry.Open()) stream.ReadExactly(pickle);
            Root = PickleReader.Load(pickle, $"{path}:{entry.FullName}", ZipStorage);
        }
        else
            Root = ReadLegacy(legacy!);
    }

    /// <summary>Opens a torch.save file; a malformed or unsafe one is an <see cref="InvalidDataException"/> naming it.</summary>
    public static TorchFile Open(string path)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"{path}: no such file", path);
        var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            Span<byte> magic = stackalloc byte[4];
            int read = stream.ReadAtLeast(magic, 4, throwOnEndOfStream: false);
            stream.Position = 0;
            if (read == 4 && magic.SequenceEqual("PK\u0003\u0004"u8))
            {
                ZipArchive zip;
                try
                {
                    zip = new ZipArchive(stream, ZipArchiveMode.Read, leaveOpen: false);
                }
                catch (InvalidDataException e)
                {
                    throw new InvalidDataException($"{path}: a broken zip archive: {e.Message}", e);
                }
                try
                {
                    return new TorchFile(path, zip, null, stream.Length);
                }
                catch
                {
                    zip.Dispose();
                    throw;
                }
            }
            if (read >= 1 && magic[0] == 0x80)
            {
                if (stream.Length > int.MaxValue)
                    throw new InvalidDataException($"{path}: a legacy (non-zip) torch file over 2 GiB; save it again with a PyTorch of 1.6 or later");
                var bytes = new byte[stream.Length];
                stream.ReadExactly(bytes);
                stream.Dispose();
                return new TorchFile(path, null, bytes, bytes.Length);
            }
            throw new InvalidDataException($"{path}: not a torch.save file (neither a zip archive nor a pickle)");
        }
        catch (Exception e)
        {
            stream.Dispose();
            throw Named(path, e);
        }
    }

    /// <summary>What the zip library or the stream threw about a damaged file, as an error naming the file.</summary>
    static Exception Named(string path, Exception e) => e switch
    {
        InvalidDataException when e.Message.StartsWith(path, StringComparison.Ordinal) => e,
        FileNotFoundException or UnauthorizedAccessException => e,
        _ => new InvalidDataException($"{path}: a damaged file: {e.Message}", e),
    };

    // torch.save stores every member; TorchSharp.PyBridge's save_py deflates them. A deflated member is read, but a
    // small file must not inflate into a huge storage or pickle: its declared length counts against the budget like
    // any storage (checked against the tensors that use it, then spent before allocation), and the inflated bytes
    // are read up to that length only, a shorter stream being an error.
    void CheckInflation(ZipArchiveEntry entry)
    {
        if (entry.Length != entry.CompressedLength && entry.Length > budget - materialised)
            throw new InvalidDataException($"{Path}: {entry.FullName} is compressed ({entry.CompressedLength} bytes for " +
                $"{entry.Length}), over the limit of {budget} " +
                "bytes for a file of its size; refused");
    }

    // Counts bytes against the budget before they are allocated.
    void Spend(long bytes, string what)
    {
        if (bytes > budget - materialised)
            throw new InvalidDataException($"{Path}: {what} would bring the tensors read to {materialised + bytes} bytes, over the limit of " +
                $"{budget} for a file of its size; refused");
        materialised += bytes;
    }

    static string ReadText(ZipArchiveEntry entry)
    {
        if (entry.Length > 64) return "";
        using var reader = new StreamReader(entry.Open());
        return reader.ReadToEnd().Trim();
    }

    /// <summary>torch's persistent id: ('storage', torch.XStorage, key, location, numel).</summary>
    TorchStorage ParseStorageId(object? id, int fields, string source)
    {
        if (id is not PickleTuple tuple || tuple.Count < fields || tuple[0] is not "storage")
            throw new InvalidDataException($"{source}: a persistent id that is not a storage ({PickleReader.TypeName(id)})");
        if (tuple[1] is not PickleGlobal { Module: "torch" } type || !TorchStorage.TryParse(type.Name, out var dtype))
            throw new InvalidDataException($"{source}: a storage of type {PickleReader.TypeName(tuple[1])}, not a torch.*Storage");
        if (tuple[2] is not string key || tuple[3] is not string location || tuple[4] is not long numel || numel < 0)
            throw new InvalidDataException($"{source}: a storage id whose key, location or size is malformed");
        if (numel > long.MaxValue / 16) throw new InvalidDataException($"{source}: storage '{key}' claims {numel} elements");
        var storage = new TorchStorage(key, type.Name, dtype, location, numel);
        if (storages.TryGetValue(key, out var seen))
        {
            if (seen.Dtype != dtype || seen.Numel != numel)
                throw new InvalidDataException($"{source}: storage '{key}' is read as {seen.TypeName}[{seen.Numel}] and as {type.Name}[{numel}]");
            return seen;
        }
        storages[key] = storage;
        return storage;
    }

    object ZipStorage(object? id)
    {
        var storage = ParseStorageId(id, 5, Path);
        var entry = zip!.GetEntry(dataPrefix + storage.Key)
            ?? throw new InvalidDataException($"{Path}: storage '{storage.Key}' has no entry {dataPrefix}{storage.Key}");
        if (entry.Length != storage.ByteLength)
            throw new InvalidDataException($"{Path}: {entry.FullName} holds {entry.Length} bytes, but its storage is " +
                $"{storage.TypeName}[{storage.Numel}] ({storage.ByteLength} bytes)");
        CheckInflation(entry);
        return storage;
    }

    object? ReadLegacy(byte[] bytes)
    {
        int offset = 0;
        object? Next(string what, PickleReader.PersistentLoad? load = null)
        {
            var value = PickleReader.Load(bytes, offset, $"{Path} ({what})", load, out int end);
            offset = end;
            return value;
        }
        if (Next("magic number") is not BigInteger magic || magic != LegacyMagic)
            throw new InvalidDataException($"{Path}: a pickle, but not a torch.save file (no torch magic number)");
        if (Next("protocol version") is not long version || version != 1001)
            throw new InvalidDataException($"{Path}: legacy torch protocol version is not 1001");
        if (Next("system info") is PickleDict info && info.TryGetValue("little_endian", out var little) && little is false)
            throw new InvalidDataException($"{Path}: storages are big-endian; only little-endian files are read");
        var root = Next("object", id =>
        {
            var storage = ParseStorageId(id, 6, Path);
            if (id is PickleTuple { Count: > 5 } tuple && tuple[5] != null)
                throw new InvalidDataException($"{Path}: a legacy storage view (storage '{storage.Key}'); load and save the file with a newer PyTorch");
            return storage;
        });
        if (Next("storage keys") is not List<object?> keys) throw new InvalidDataException($"{Path}: the legacy storage list is missing");
        long position = offset;
        foreach (var item in keys)
        {
            if (item is not string key || !storages.TryGetValue(key, out var storage))
                throw new InvalidDataException($"{Path}: the legacy storage list names '{item}', which no tensor uses");
            if (position + 8 > bytes.Length) throw new InvalidDataException($"{Path}: truncated in the data of storage '{key}'");
            long numel = BitConverter.ToInt64(bytes, (int)position);
            if (numel != storage.Numel) throw new InvalidDataException($"{Path}: storage '{key}' holds {numel} elements, its tensors say {storage.Numel}");
            position += 8;
            if (storage.ByteLength > bytes.Length - position) throw new InvalidDataException($"{Path}: truncated in the data of storage '{key}'");
            legacyOffsets[key] = position;
            position += storage.ByteLength;
        }
        foreach (var key in storages.Keys)
            if (!legacyOffsets.ContainsKey(key)) throw new InvalidDataException($"{Path}: storage '{key}' has no data");
        return root;
    }

    /// <summary>
    /// The tensor (a contiguous CPU copy with the file's dtype); the caller owns it. Storages shared between
    /// tensors are read once; sizes, strides and offsets are checked against the storage first.
    /// </summary>
    public Tensor GetTensor(TorchTensorRef reference)
    {
        var (storage, offset, size, stride) = (reference.Storage, reference.Offset, reference.Size, reference.Stride);
        string what = $"{Path}: a tensor of storage '{storage.Key}'";
        if (size.Length != stride.Length) throw new InvalidDataException($"{what} has {size.Length} sizes but {stride.Length} strides");
        if (size.Length > 64) throw new InvalidDataException($"{what} has {size.Length} dimensions; libtorch allows 64");
        if (offset < 0 || size.Any(s => s < 0) || stride.Any(s => s < 0)) throw new InvalidDataException($"{what} has a negative size, stride or offset");
        long numel = 1, last = offset;
        try
        {
            foreach (var (n, s) in size.Zip(stride))
            {
                numel = checked(numel * n);
                if (n > 0) last = checked(last + (n - 1) * s);
            }
        }
        catch (OverflowException)
        {
            throw new InvalidDataException($"{what}: its size [{string.Join(", ", size)}] overflows");
        }
        if (numel == 0) return zeros(size, dtype: storage.Dtype);
        if (!loaded.ContainsKey(storage.Key)) Spend(storage.ByteLength, $"storage '{storage.Key}'");
        // Bounded memory: a view may repeat elements (stride 0), but not blow a small storage up without end.
        if (numel > 16 * storage.Numel + 1024)
            throw new InvalidDataException($"{what}: size [{string.Join(", ", size)}] has {numel} elements, far more than its storage's {storage.Numel}");
        if (last >= storage.Numel)
            throw new InvalidDataException($"{what}: size [{string.Join(", ", size)}], stride [{string.Join(", ", stride)}] and offset {offset} reach " +
                $"element {last} of a storage of {storage.Numel}");
        Spend(numel * TorchStorage.ElementSize(storage.Dtype), $"the tensor {StateDictImport.ShapeText(size)} of storage '{storage.Key}'");
        var typed = Storage(storage);
        using var view = typed.as_strided(size, stride, offset);
        // contiguous() of a strided view is a copy of its own: freed here, only the clone goes to the caller.
        using var contiguous = view.contiguous();
        return contiguous.clone();
    }

    Tensor Storage(TorchStorage storage)
    {
        if (loaded.TryGetValue(storage.Key, out var cached)) return cached;
        using var scope = NewDisposeScope();
        var bytes = empty([storage.ByteLength], dtype: ScalarType.Byte);
        if (zip != null)
        {
            try
            {
                using var stream = zip.GetEntry(dataPrefix + storage.Key)!.Open();
                for (long done = 0; done < storage.ByteLength;)
                {
                    int chunk = (int)Math.Min(1 << 30, storage.ByteLength - done);
                    using var part = bytes.narrow(0, done, chunk);
                    stream.ReadExactly(part.bytes);
                    done += chunk;
                }
            }
            catch (Exception e) when (e is IOException or InvalidDataException)
            {
                throw Named(Path, e);
            }
        }
        else
            legacy.AsSpan((int)legacyOffsets[storage.Key], (int)storage.ByteLength).CopyTo(bytes.bytes);
        if (storage.Dtype == ScalarType.Bool)
        {
            using var bad = bytes.gt(1);
            using var any = bad.any();
            if (any.item<bool>()) throw new InvalidDataException($"{Path}: bool storage '{storage.Key}' holds bytes other than 0 and 1");
        }
        // A typed alias of the bytes: set_ keeps the dtype and takes the byte storage, as SafetensorsFile does.
        using var anchor = bytes.narrow(0, 0, 0);
        var typed = empty([0], dtype: storage.Dtype).set_(anchor).as_strided([storage.Numel], [1], 0);
        loaded[storage.Key] = typed.MoveToOuterDisposeScope();
        return loaded[storage.Key];
    }

    public void Dispose()
    {
        foreach (var tensor in loaded.Values) tensor.Dispose();
        loaded.Clear();
        zip?.Dispose();
    }
}
