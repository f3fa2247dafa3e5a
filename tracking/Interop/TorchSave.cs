using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using static TorchSharp.torch;

namespace Medformer.Tracking.Interop;

/// <summary>
/// Writes a state_dict as <c>torch.save(state_dict, path)</c> does (PyTorch 1.6 and later): a zip of stored members,
/// <c>archive/data.pkl</c> (pickle protocol 2: an <c>collections.OrderedDict</c> of names to
/// <c>torch._utils._rebuild_tensor_v2</c> calls), <c>archive/data/KEY</c> per tensor (its bytes, contiguous, little
/// endian), <c>archive/byteorder</c> and <c>archive/version</c>. What <c>torch.load</c>, TorchSharp.PyBridge's
/// <c>load_py</c> and our <see cref="TorchFile"/> read.
/// <para>Ours rather than PyBridge's <c>PyTorchPickler.PickleStateDict</c>: that one deflates every member (torch.save
/// never does; a deflated storage cannot be memory-mapped by <c>torch.load(mmap=True)</c>, and all-zero tensors
/// shrink a thousandfold, so a bounded reader sees a bomb), keeps no order (a <c>Hashtable</c>, pickled as a plain
/// dict) and writes no byteorder record. Both are tested against each other (tests/tracking/PyBridgeInteropTests).</para>
/// </summary>
public static class TorchSave
{
    /// <summary>Writes <paramref name="tensors"/> (in their order) to <paramref name="path"/>; any dtype torch has a storage for.</summary>
    public static void Write(string path, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        using var file = File.Create(path);
        Write(file, tensors);
        file.Flush(flushToDisk: true);
    }

    /// <summary>Writes the archive to <paramref name="stream"/>, which stays open.</summary>
    public static void Write(Stream stream, IEnumerable<KeyValuePair<string, Tensor>> tensors)
    {
        using var zip = new ZipArchive(stream, ZipArchiveMode.Create, leaveOpen: true);
        var pickle = new PickleWriter();
        pickle.Global("collections", "OrderedDict");
        pickle.Op(')').Op('R');
        pickle.Op('(');
        int key = 0;
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, tensor) in tensors)
        {
            if (!seen.Add(name)) throw new ArgumentException($"the name '{name}' appears twice in the state_dict");
            string storageKey = (key++).ToString(System.Globalization.CultureInfo.InvariantCulture);
            using (var scope = NewDisposeScope())
            {
                var data = tensor.detach().cpu().contiguous();
                using var entry = zip.CreateEntry("archive/data/" + storageKey, CompressionLevel.NoCompression).Open();
                if (data.NumberOfElements > 0) WriteBytes(entry, data);
            }
            pickle.String(name);
            // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks)
            pickle.Global("torch._utils", "_rebuild_tensor_v2");
            pickle.Op('(');
            pickle.Op('(').String("storage").Global("torch", StorageName(tensor.dtype)).String(storageKey).String("cpu").Long(tensor.NumberOfElements).Op('t');
            pickle.Op('Q');                                               // BINPERSID
            pickle.Long(0);
            pickle.Tuple(tensor.shape);
            pickle.Tuple(ContiguousStrides(tensor.shape));
            pickle.Op(0x89);                                              // NEWFALSE: requires_grad
            pickle.Global("collections", "OrderedDict").Op(')').Op('R');   // backward_hooks
            pickle.Op('t').Op('R');
        }
        pickle.Op('u').Op('.');                                          // SETITEMS, STOP
        using (var entry = zip.CreateEntry("archive/data.pkl", CompressionLevel.NoCompression).Open()) entry.Write(pickle.ToArray());
        using (var entry = zip.CreateEntry("archive/byteorder", CompressionLevel.NoCompression).Open()) entry.Write("little"u8);
        using (var entry = zip.CreateEntry("archive/version", CompressionLevel.NoCompression).Open()) entry.Write("3\n"u8);
    }

    /// <summary>torch's storage class for a dtype, as torch.save names it in the persistent id.</summary>
    public static string StorageName(ScalarType dtype) => dtype switch
    {
        ScalarType.Float32 => "FloatStorage",
        ScalarType.Float64 => "DoubleStorage",
        ScalarType.Float16 => "HalfStorage",
        ScalarType.BFloat16 => "BFloat16Storage",
        ScalarType.Int64 => "LongStorage",
        ScalarType.Int32 => "IntStorage",
        ScalarType.Int16 => "ShortStorage",
        ScalarType.Int8 => "CharStorage",
        ScalarType.Byte => "ByteStorage",
        ScalarType.Bool => "BoolStorage",
        ScalarType.ComplexFloat32 => "ComplexFloatStorage",
        ScalarType.ComplexFloat64 => "ComplexDoubleStorage",
        _ => throw new ArgumentException($"torch.save has no storage for {dtype}"),
    };

    static long[] ContiguousStrides(long[] shape)
    {
        var strides = new long[shape.Length];
        long stride = 1;
        for (int i = shape.Length - 1; i >= 0; i--)
        {
            strides[i] = stride;
            stride *= Math.Max(1, shape[i]);
        }
        return strides;
    }

    // The elements in row-major order, a quarter gigabyte at a time (Span lengths are int).
    static void WriteBytes(Stream stream, Tensor data)
    {
        using var flat = data.reshape(-1);
        long elements = flat.numel(), step = Math.Max(1, (256L << 20) / flat.element_size());
        for (long start = 0; start < elements; start += step)
        {
            using var piece = flat.narrow(0, start, Math.Min(step, elements - start));
            stream.Write(piece.bytes);
        }
    }

    /// <summary>The few pickle opcodes a state_dict needs (protocol 2).</summary>
    sealed class PickleWriter
    {
        readonly MemoryStream buffer = new();

        public PickleWriter() => buffer.Write([0x80, 2]);                // PROTO 2

        public PickleWriter Op(int opcode)
        {
            buffer.WriteByte((byte)opcode);
            return this;
        }

        public PickleWriter Global(string module, string name)
        {
            buffer.WriteByte((byte)'c');
            buffer.Write(Encoding.ASCII.GetBytes($"{module}\n{name}\n"));
            return this;
        }

        public PickleWriter String(string text)
        {
            var utf8 = Encoding.UTF8.GetBytes(text);
            Span<byte> length = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(length, (uint)utf8.Length);
            buffer.WriteByte((byte)'X');                                  // BINUNICODE
            buffer.Write(length);
            buffer.Write(utf8);
            return this;
        }

        public PickleWriter Long(long value)
        {
            if (value is >= int.MinValue and <= int.MaxValue)
            {
                Span<byte> bytes = stackalloc byte[4];
                BinaryPrimitives.WriteInt32LittleEndian(bytes, (int)value);
                buffer.WriteByte((byte)'J');                              // BININT
                buffer.Write(bytes);
            }
            else
            {
                Span<byte> bytes = stackalloc byte[8];
                BinaryPrimitives.WriteInt64LittleEndian(bytes, value);
                buffer.Write([0x8a, 8]);                                  // LONG1, 8 bytes, two's complement
                buffer.Write(bytes);
            }
            return this;
        }

        public PickleWriter Tuple(long[] values)
        {
            Op('(');
            foreach (long value in values) Long(value);
            return Op('t');
        }

        public byte[] ToArray() => buffer.ToArray();
    }
}
