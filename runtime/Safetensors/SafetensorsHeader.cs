using System.Buffers.Binary;
using System.Diagnostics.CodeAnalysis;
using System.Text;
using System.Text.Json;

namespace Medformer.Runtime;

/// <summary>
/// A validated safetensors header: the metadata and every tensor's entry, sorted by data offset. Parsing checks all
/// the spec demands (and refuses what it leaves ambiguous: duplicate keys, unknown fields), so that every byte range
/// it returns lies inside the data buffer and the ranges tile it exactly.
/// </summary>
internal sealed record SafetensorsHeader(IReadOnlyDictionary<string, string>? Metadata, IReadOnlyList<SafetensorsTensorInfo> Tensors)
{
    /// <summary>The reference implementation's limit; a bigger header is refused before it is read.</summary>
    public const long MaxLength = 100_000_000;

    public const string MetadataKey = "__metadata__";

    /// <summary>Validates the 8-byte length field against the file size; returns the header's length.</summary>
    public static int CheckLength(ReadOnlySpan<byte> lengthField, long fileLength, string path)
    {
        ulong length = BinaryPrimitives.ReadUInt64LittleEndian(lengthField);
        if (length > (ulong)(fileLength - 8))
            throw new SafetensorsException(path,
                $"header length {length} exceeds file size {fileLength} (at most {fileLength - 8} bytes follow the 8-byte length field)");
        if (length > MaxLength)
            throw new SafetensorsException(path, $"header length {length} exceeds the limit of {MaxLength} bytes");
        return (int)length;
    }

    /// <summary>Parses and validates the header's bytes against a data buffer of <paramref name="dataLength"/> bytes.</summary>
    public static SafetensorsHeader Parse(ReadOnlySpan<byte> header, long dataLength, string path)
    {
        if (header.Length == 0 || header[0] != (byte)'{')
            throw new SafetensorsException(path, header.Length == 0
                ? "header is empty; it must be a JSON object"
                : $"header does not begin with '{{' (first byte is 0x{header[0]:X2}); it must be a JSON object");
        if (!System.Text.Unicode.Utf8.IsValid(header))
            throw new SafetensorsException(path, $"header is not valid UTF-8 (at byte {FirstInvalidUtf8(header)} of the header)");

        var parser = new Parser(path);
        var reader = new Utf8JsonReader(header, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Disallow, AllowTrailingCommas = false });
        try
        {
            parser.ReadRoot(ref reader);
            // Padding after the object must be whitespace; the reader throws on anything else.
            if (reader.Read())
                throw new SafetensorsException(path, "header holds more than one JSON value");
        }
        catch (JsonException e)
        {
            throw new SafetensorsException(path, $"header is not valid JSON: {e.Message}", e);
        }
        catch (InvalidOperationException e)
        {
            // GetString refuses strings that decode to invalid UTF-16 (a lone "\ud800" escape).
            throw new SafetensorsException(path, $"header is not valid JSON: {e.Message}", e);
        }

        var tensors = parser.Tensors;
        foreach (var info in tensors) CheckSize(info, dataLength, path);
        tensors.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin)
            : a.End != b.End ? a.End.CompareTo(b.End)
            : string.CompareOrdinal(a.Name, b.Name));
        CheckTiling(tensors, dataLength, path);
        return new SafetensorsHeader(parser.Metadata, tensors);
    }

    static void CheckSize(SafetensorsTensorInfo info, long dataLength, string path)
    {
        string name = Quote(info.Name);
        long elements = 1;
        bool empty = false;
        foreach (long dim in info.Shape)
        {
            // Zero dims are counted as 1 here so the strides of an empty tensor cannot overflow either.
            if (dim == 0) empty = true;
            else if (!TryMultiply(elements, dim, out elements))
                throw new SafetensorsException(path, $"tensor {name}: shape {ShapeText(info.Shape)} has more elements than 64-bit sizes can count");
        }
        if (empty) elements = 0;
        if (!TryMultiply(elements, info.Dtype.BitSize, out long bits))
            throw new SafetensorsException(path, $"tensor {name}: {info.Describe()} has more bits than 64-bit sizes can count");
        if (bits % 8 != 0)
            throw new SafetensorsException(path, $"tensor {name}: {info.Describe()} is {bits} bits, not a whole number of bytes");
        long bytes = bits / 8;
        string offsets = $"data_offsets [{info.Begin}, {info.End}]";
        if (info.End < info.Begin)
            throw new SafetensorsException(path, $"tensor {name}: {offsets} end before they begin");
        if (info.End > dataLength)
            throw new SafetensorsException(path, $"tensor {name}: {offsets} extend past the end of the data buffer ({dataLength} bytes)");
        if (info.End - info.Begin != bytes)
            throw new SafetensorsException(path, $"tensor {name}: {offsets} is {info.End - info.Begin} bytes but {info.Describe()} needs {bytes}");
    }

    static bool TryMultiply(long a, long b, out long product)
    {
        try
        {
            product = checked(a * b);
            return true;
        }
        catch (OverflowException)
        {
            product = 0;
            return false;
        }
    }

    /// <summary>The spec forbids holes and overlaps: sorted by offset, each range starts where the previous ended.</summary>
    static void CheckTiling(List<SafetensorsTensorInfo> sorted, long dataLength, string path)
    {
        long cursor = 0;
        SafetensorsTensorInfo? previous = null;
        foreach (var info in sorted)
        {
            if (info.Begin < cursor)
                throw new SafetensorsException(path,
                    $"tensors {Quote(previous!.Name)} and {Quote(info.Name)} overlap (data_offsets [{previous.Begin}, " +
                        $"{previous.End}] and [{info.Begin}, {info.End}])");
            if (info.Begin > cursor)
                throw new SafetensorsException(path,
                    $"hole in data buffer at byte {cursor}: bytes {cursor} to {info.Begin} belong to no tensor (next is {Quote(info.Name)})");
            cursor = info.End;
            previous = info;
        }
        if (cursor != dataLength)
            throw new SafetensorsException(path, $"hole in data buffer at byte {cursor}: the tensors end there but the data buffer is {dataLength} bytes");
    }

    static long FirstInvalidUtf8(ReadOnlySpan<byte> bytes)
    {
        int at = 0;
        while (at < bytes.Length)
        {
            if (System.Text.Rune.DecodeFromUtf8(bytes[at..], out _, out int consumed) != System.Buffers.OperationStatus.Done) return at;
            at += consumed;
        }
        return at;
    }

    /// <summary>A name for a message: quoted, control characters escaped, cut short when long.</summary>
    internal static string Quote(string name)
    {
        const int limit = 120;
        var text = new StringBuilder("'");
        foreach (char c in name.Length > limit ? name[..limit] : name)
            text.Append(char.IsControl(c) ? $"\\u{(int)c:x4}" : c.ToString());
        if (name.Length > limit) text.Append("...");
        return text.Append('\'').ToString();
    }

    internal static string ShapeText(IReadOnlyList<long> shape) =>
        shape.Count <= 16 ? $"[{string.Join(", ", shape)}]" : $"[{string.Join(", ", shape.Take(16))}, ... ({shape.Count} dims)]";

    /// <summary>Walks the JSON token by token: only the header's own shape is accepted, nothing is skipped unread.</summary>
    sealed class Parser(string path)
    {
        public Dictionary<string, string>? Metadata { get; private set; }
        public List<SafetensorsTensorInfo> Tensors { get; } = [];

        public void ReadRoot(ref Utf8JsonReader reader)
        {
            Next(ref reader);
            if (reader.TokenType != JsonTokenType.StartObject) Fail($"header is {Token(ref reader)}, not a JSON object");
            var keys = new HashSet<string>(StringComparer.Ordinal);
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                string key = reader.GetString()!;
                if (!keys.Add(key)) Fail($"duplicate key {Quote(key)} in header");
                Next(ref reader);
                if (key == MetadataKey) Metadata = ReadMetadata(ref reader);
                else Tensors.Add(ReadEntry(ref reader, key));
            }
        }

        Dictionary<string, string> ReadMetadata(ref Utf8JsonReader reader)
        {
            if (reader.TokenType != JsonTokenType.StartObject) Fail($"{MetadataKey} is {Token(ref reader)}, not an object of strings");
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                string key = reader.GetString()!;
                Next(ref reader);
                if (reader.TokenType != JsonTokenType.String) Fail($"{MetadataKey} value for {Quote(key)} is {Token(ref reader)}, not a string");
                if (!metadata.TryAdd(key, reader.GetString()!)) Fail($"duplicate key {Quote(key)} in {MetadataKey}");
            }
            return metadata;
        }

        SafetensorsTensorInfo ReadEntry(ref Utf8JsonReader reader, string name)
        {
            string who = $"tensor {Quote(name)}";
            if (reader.TokenType != JsonTokenType.StartObject) Fail($"{who}: entry is {Token(ref reader)}, not an object");
            SafetensorsDtype? dtype = null;
            List<long>? shape = null;
            (long Begin, long End)? offsets = null;
            var fields = new HashSet<string>(StringComparer.Ordinal);
            while (Next(ref reader) != JsonTokenType.EndObject)
            {
                string field = reader.GetString()!;
                if (!fields.Add(field)) Fail($"{who}: duplicate field {Quote(field)}");
                Next(ref reader);
                switch (field)
                {
                    case "dtype":
                        if (reader.TokenType != JsonTokenType.String) Fail($"{who}: dtype is {Token(ref reader)}, not a string");
                        string text = reader.GetString()!;
                        dtype = SafetensorsDtype.TryParse(text);
                        if (dtype == null) Fail($"{who}: unknown dtype {Quote(text)}");
                        break;
                    case "shape":
                        shape = ReadShape(ref reader, who);
                        break;
                    case "data_offsets":
                        offsets = ReadOffsets(ref reader, who);
                        break;
                    default:
                        Fail($"{who}: unknown field {Quote(field)} (an entry holds dtype, shape and data_offsets)");
                        break;
                }
            }
            if (dtype == null) Fail($"{who}: missing dtype");
            if (shape == null) Fail($"{who}: missing shape");
            if (offsets == null) Fail($"{who}: missing data_offsets");
            return new SafetensorsTensorInfo(name, dtype, shape.ToArray(), offsets.Value.Begin, offsets.Value.End);
        }

        List<long> ReadShape(ref Utf8JsonReader reader, string who)
        {
            if (reader.TokenType != JsonTokenType.StartArray) Fail($"{who}: shape is {Token(ref reader)}, not an array");
            var shape = new List<long>();
            while (Next(ref reader) != JsonTokenType.EndArray)
                shape.Add(ReadSize(ref reader, $"{who}: shape[{shape.Count}]"));
            return shape;
        }

        (long, long) ReadOffsets(ref Utf8JsonReader reader, string who)
        {
            if (reader.TokenType != JsonTokenType.StartArray) Fail($"{who}: data_offsets is {Token(ref reader)}, not an array");
            var values = new List<long>(2);
            while (Next(ref reader) != JsonTokenType.EndArray)
            {
                if (values.Count == 2) Fail($"{who}: data_offsets has more than 2 values");
                values.Add(ReadSize(ref reader, $"{who}: data_offsets[{values.Count}]"));
            }
            if (values.Count != 2) Fail($"{who}: data_offsets has {values.Count} value(s), not 2");
            return (values[0], values[1]);
        }

        /// <summary>A dimension or offset: a plain non-negative integer that fits torch's 64-bit signed sizes.</summary>
        long ReadSize(ref Utf8JsonReader reader, string what)
        {
            if (reader.TokenType != JsonTokenType.Number) Fail($"{what} is {Token(ref reader)}, not a non-negative integer");
            if (!reader.TryGetUInt64(out ulong value))
                Fail($"{what} is {Raw(ref reader)}, not a non-negative integer");
            if (value > long.MaxValue) Fail($"{what} is {value}, beyond 64-bit signed sizes");
            return (long)value;
        }

        JsonTokenType Next(ref Utf8JsonReader reader)
        {
            if (!reader.Read()) Fail("header JSON ends early");
            return reader.TokenType;
        }

        static string Token(ref Utf8JsonReader reader) => reader.TokenType switch
        {
            JsonTokenType.StartObject => "an object",
            JsonTokenType.StartArray => "an array",
            JsonTokenType.String => $"a string ({Quote(reader.GetString()!)})",
            JsonTokenType.Number => $"a number ({Raw(ref reader)})",
            JsonTokenType.True => "true",
            JsonTokenType.False => "false",
            JsonTokenType.Null => "null",
            var other => other.ToString(),
        };

        static string Raw(ref Utf8JsonReader reader)
        {
            string text = Encoding.UTF8.GetString(reader.ValueSpan);
            return text.Length <= 40 ? text : text[..40] + "...";
        }

        [DoesNotReturn]
        void Fail(string fault) => throw new SafetensorsException(path, fault);
    }
}
