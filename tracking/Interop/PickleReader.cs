using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Text;

namespace Medformer.Tracking.Interop;

/// <summary>A tuple in an unpickled object tree.</summary>
public sealed record PickleTuple(IReadOnlyList<object?> Items)
{
    public int Count => Items.Count;
    public object? this[int index] => Items[index];
}

/// <summary>A dict or collections.OrderedDict, in insertion order; keys are strings, integers, floats, bools or None.</summary>
public sealed class PickleDict : OrderedDictionary<object, object?>
{
    /// <summary>None as a key (a dictionary key cannot be null).</summary>
    public static readonly object NoneKey = new();
}

/// <summary>A class or function the pickle named with GLOBAL / STACK_GLOBAL, and that the reader allows.</summary>
public sealed record PickleGlobal(string Module, string Name)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>
/// An unpickler for what <c>torch.save</c> writes of a state_dict, and nothing else. It builds plain data (None, bools,
/// integers, floats, strings, bytes, tuples, lists, dicts) and lets through exactly the globals a state_dict needs:
/// <c>collections.OrderedDict</c>, <c>torch._utils._rebuild_tensor_v2</c> / <c>_rebuild_tensor</c> /
/// <c>_rebuild_parameter</c> / <c>_rebuild_parameter_with_state</c>, and the <c>torch.*Storage</c> types inside
/// persistent ids. Any other GLOBAL, STACK_GLOBAL, REDUCE, NEWOBJ or BUILD target is refused with an
/// <see cref="InvalidDataException"/> that names it and says "refused"; no code is ever looked up or run (the "callables" are
/// interpreted here, by name). Every read is bounds-checked and the work is linear in the input: a malformed pickle
/// is an <see cref="InvalidDataException"/>, never a crash or a hang.
/// </summary>
public sealed class PickleReader
{
    /// <summary>What a persistent id (a tensor's storage) resolves to; torch's is ('storage', type, key, location, numel).</summary>
    public delegate object PersistentLoad(object? id);

    const int MaxTextNumber = 64;  // digits of a protocol-0 number: a long one would make BigInteger.Parse quadratic
    const int MaxLongBytes = 64;   // LONG1/LONG4 payloads: a state_dict holds nothing wider than 64 bits

    static readonly HashSet<string> TensorBuilders = ["_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter", "_rebuild_parameter_with_state"];

    readonly byte[] data;
    readonly string source;
    readonly PersistentLoad? persistentLoad;
    readonly List<object?> stack = [];
    readonly Stack<int> marks = new();
    readonly Dictionary<long, object?> memo = [];
    int position;

    PickleReader(byte[] data, string source, PersistentLoad? persistentLoad)
    {
        this.data = data;
        this.source = source;
        this.persistentLoad = persistentLoad;
    }

    /// <summary>The object the pickle holds. <paramref name="source"/> names it in errors.</summary>
    public static object? Load(byte[] data, string source, PersistentLoad? persistentLoad = null) =>
        Load(data, 0, source, persistentLoad, out _);

    /// <summary>The object of the pickle starting at <paramref name="offset"/>; <paramref name="end"/> is where it stopped.</summary>
    public static object? Load(byte[] data, int offset, string source, PersistentLoad? persistentLoad, out int end)
    {
        var reader = new PickleReader(data, source, persistentLoad) { position = offset };
        try
        {
            var result = reader.Run();
            end = reader.position;
            return result;
        }
        catch (InvalidDataException)
        {
            throw;
        }
        catch (Exception e) when (e is InvalidCastException or ArgumentException or OverflowException or FormatException
                                      or IndexOutOfRangeException or KeyNotFoundException or InvalidOperationException or DecoderFallbackException)
        {
            throw reader.Bad($"malformed ({e.Message})");
        }
    }

    /// <summary>A torch name the reader allows, or null. Storage types are allowed only as persistent-id members.</summary>
    public static bool IsAllowed(string module, string name) =>
        (module, name) switch
        {
            ("collections", "OrderedDict") => true,
            ("torch._utils", _) => TensorBuilders.Contains(name),
            ("torch", _) => TorchStorage.TryParse(name, out _),
            _ => false,
        };

    InvalidDataException Bad(string what) => new($"{source}: not a valid pickle at byte {position}: {what}");

    InvalidDataException Refuse(string what) =>
        new($"{source}: the pickle asks for {what}, which a state_dict never holds; refused, nothing was run " +
            "(only tensors, dicts, lists, tuples and plain values are read)");

    object? Run()
    {
        while (true)
        {
            byte op = Byte();
            switch (op)
            {
                case 0x80: // PROTO
                    int protocol = Byte();
                    if (protocol > 5) throw Bad($"pickle protocol {protocol} is newer than 5");
                    break;
                case 0x95: // FRAME: a length hint only
                    Take(8);
                    break;
                case (byte)'.': // STOP
                    if (marks.Count > 0) throw Bad("STOP inside an open MARK");
                    if (stack.Count != 1) throw Bad($"STOP with {stack.Count} items on the stack, not 1");
                    return stack[0];
                case (byte)'(': marks.Push(stack.Count); break;
                case (byte)'0': Pop(); break;
                case (byte)'1': PopMark(); break;
                case (byte)'2': Push(Peek()); break;
                case (byte)'N': Push(null); break;
                case 0x88: Push(true); break;
                case 0x89: Push(false); break;
                case (byte)'J': Push((long)BinaryPrimitives.ReadInt32LittleEndian(Take(4))); break;
                case (byte)'K': Push((long)Byte()); break;
                case (byte)'M': Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Take(2))); break;
                case 0x8a: Push(Long(Take(Byte()))); break;
                case 0x8b: Push(Long(Take(Length(BinaryPrimitives.ReadInt32LittleEndian(Take(4)), MaxLongBytes)))); break;
                case (byte)'I':
                    string text = Line();
                    Push(text switch { "00" => false, "01" => true, _ => Integer(text) });
                    break;
                case (byte)'L': Push(Integer(Line().TrimEnd('L'))); break;
                case (byte)'F': Push(Float(Line())); break;
                case (byte)'G': Push(BinaryPrimitives.ReadDoubleBigEndian(Take(8))); break;
                case (byte)'X': Push(Utf8(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))))); break;
                case 0x8c: Push(Utf8(Take(Byte()))); break;
                case 0x8d: Push(Utf8(Take(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)))))); break;
                case (byte)'V': Push(RawUnicodeEscape(Line())); break;
                case (byte)'S': Push(QuotedString(Line())); break;
                case (byte)'T': Push(Latin1(Take(Length(BinaryPrimitives.ReadInt32LittleEndian(Take(4)))))); break;
                case (byte)'U': Push(Latin1(Take(Byte()))); break;
                case (byte)'B': Push(Take(Length(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))).ToArray()); break;
                case (byte)'C': Push(Take(Byte()).ToArray()); break;
                case 0x8e or 0x96: Push(Take(Length(BinaryPrimitives.ReadUInt64LittleEndian(Take(8)))).ToArray()); break;
                case (byte)')': Push(new PickleTuple([])); break;
                case (byte)'t': Push(new PickleTuple(PopMark())); break;
                case 0x85: Push(new PickleTuple([Pop()])); break;
                case 0x86: { var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b])); break; }
                case 0x87: { var c = Pop(); var b = Pop(); var a = Pop(); Push(new PickleTuple([a, b, c])); break; }
                case (byte)']': Push(new List<object?>()); break;
                case (byte)'l': Push(PopMark()); break;
                case (byte)'a': { var item = Pop(); List(Peek(), "APPEND").Add(item); break; }
                case (byte)'e': { var items = PopMark(); List(Peek(), "APPENDS").AddRange(items); break; }
                case (byte)'}': Push(new PickleDict()); break;
                case (byte)'d': { var dict = new PickleDict(); SetItems(dict, PopMark()); Push(dict); break; }
                case (byte)'s': { var value = Pop(); var key = Pop(); Dict(Peek(), "SETITEM")[Key(key)] = value; break; }
                case (byte)'u': { var items = PopMark(); SetItems(Dict(Peek(), "SETITEMS"), items); break; }
                case 0x8f: Push(new List<object?>()); break;                 // EMPTY_SET: a list will do
                case 0x90: { var items = PopMark(); List(Peek(), "ADDITEMS").AddRange(items); break; }
                case 0x91: Push(PopMark()); break;                            // FROZENSET
                case (byte)'h': Push(Memo(Byte())); break;
                case (byte)'j': Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Take(4)))); break;
                case (byte)'g': Push(Memo(MemoIndex(Line()))); break;
                case (byte)'q': memo[Byte()] = Peek(); break;
                case (byte)'r': memo[BinaryPrimitives.ReadUInt32LittleEndian(Take(4))] = Peek(); break;
                case (byte)'p': memo[MemoIndex(Line())] = Peek(); break;
                case 0x94: memo[memo.Count] = Peek(); break;                  // MEMOIZE
                case (byte)'c': Push(Global(Line(), Line())); break;
                case 0x93:
                {
                    var name = Pop();
                    var module = Pop();
                    if (module is not string m || name is not string n) throw Bad("STACK_GLOBAL of something other than two strings");
                    Push(Global(m, n));
                    break;
                }
                case (byte)'R': { var args = Pop(); var callable = Pop(); Push(Reduce(callable, args)); break; }
                case 0x81: { var args = Pop(); var cls = Pop(); Push(NewObject(cls, args)); break; }
                case (byte)'b': { var state = Pop(); Build(Peek(), state); break; }
                case (byte)'Q': Push(Persistent(Pop())); break;
                case (byte)'P': Push(Persistent(Line())); break;
                case (byte)'i': throw Refuse($"an instance of {Line()}.{Line()} (INST)");
                case (byte)'o': throw Refuse("an object built by OBJ");
                case 0x92: throw Refuse("an object built by NEWOBJ_EX");
                case 0x82 or 0x83 or 0x84: throw Refuse("a class from the extension registry (EXT)");
                case 0x97 or 0x98: throw Bad("out-of-band buffers (protocol 5 NEXT_BUFFER) are not part of a torch file");
                default: throw Bad($"unknown opcode 0x{op:x2}");
            }
        }
    }

    // --- reading ---

    byte Byte()
    {
        if (position >= data.Length) throw Bad("truncated");
        return data[position++];
    }

    ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > data.Length - position) throw Bad($"truncated: {count} bytes wanted, {data.Length - position} left");
        var span = data.AsSpan(position, count);
        position += count;
        return span;
    }

    int Length(long length, int limit = int.MaxValue)
    {
        if (length < 0 || length > data.Length - position) throw Bad($"a length of {length} runs past the end ({data.Length - position} bytes left)");
        if (length > limit) throw Bad($"a length of {length} is over the limit of {limit}");
        return (int)length;
    }

    int Length(ulong length) => Length(length > long.MaxValue ? -1 : (long)length);

    string Line()
    {
        int end = Array.IndexOf(data, (byte)'\n', position);
        if (end < 0) throw Bad("truncated: a text argument has no end of line");
        var line = Encoding.Latin1.GetString(data, position, end - position);
        position = end + 1;
        return line;
    }

    static readonly UTF8Encoding StrictUtf8 = new(false, throwOnInvalidBytes: true);

    string Utf8(ReadOnlySpan<byte> bytes)
    {
        try
        {
            return StrictUtf8.GetString(bytes);
        }
        catch (DecoderFallbackException)
        {
            throw Bad("a string is not valid UTF-8");
        }
    }

    static string Latin1(ReadOnlySpan<byte> bytes) => Encoding.Latin1.GetString(bytes);

    // --- values ---

    static object Long(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length == 0) return 0L;
        var value = new BigInteger(bytes, isUnsigned: false, isBigEndian: false);
        return Narrow(value);
    }

    object Integer(string text)
    {
        if (text.Length > MaxTextNumber) throw Bad($"an integer of {text.Length} digits");
        if (!BigInteger.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var value)) throw Bad($"'{text}' is not an integer");
        return Narrow(value);
    }

    // A long when it fits, as Python's int is one type. The casts to object matter: a plain ternary of long and
    // BigInteger converts both arms to BigInteger, and every LONG1 integer would then fail the "is long" checks.
    static object Narrow(BigInteger value) => value >= long.MinValue && value <= long.MaxValue ? (object)(long)value : value;

    double Float(string text)
    {
        if (text.Length > MaxTextNumber) throw Bad($"a float of {text.Length} characters");
        return text switch
        {
            "nan" => double.NaN,
            "inf" => double.PositiveInfinity,
            "-inf" => double.NegativeInfinity,
            _ when double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) => v,
            _ => throw Bad($"'{text}' is not a float"),
        };
    }

    string QuotedString(string line)
    {
        if (line.Length < 2 || line[0] != line[^1] || line[0] is not ('\'' or '"')) throw Bad("STRING argument is not quoted");
        var builder = new StringBuilder();
        string body = line[1..^1];
        for (int i = 0; i < body.Length; i++)
        {
            char c = body[i];
            if (c != '\\') { builder.Append(c); continue; }
            if (++i >= body.Length) throw Bad("STRING ends in a backslash");
            switch (body[i])
            {
                case 'n': builder.Append('\n'); break;
                case 't': builder.Append('\t'); break;
                case 'r': builder.Append('\r'); break;
                case 'x' when i + 2 < body.Length && int.TryParse(body.AsSpan(i + 1, 2), NumberStyles.HexNumber, null, out int hex):
                    builder.Append((char)hex);
                    i += 2;
                    break;
                case var other and ('\\' or '\'' or '"'): builder.Append(other); break;
                default: throw Bad($"STRING escape '\\{body[i]}' is not supported");
            }
        }
        return builder.ToString();
    }

    string RawUnicodeEscape(string line)
    {
        var builder = new StringBuilder();
        for (int i = 0; i < line.Length; i++)
        {
            if (line[i] == '\\' && i + 5 < line.Length && line[i + 1] == 'u'
                && int.TryParse(line.AsSpan(i + 2, 4), NumberStyles.HexNumber, null, out int code))
            {
                builder.Append((char)code);
                i += 5;
            }
            else builder.Append(line[i]);
        }
        return builder.ToString();
    }

    long MemoIndex(string text) =>
        text.Length <= 10 && long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture,
            out long index) ? index : throw Bad($"'{text}' is not a memo index");

    object? Memo(long index) => memo.TryGetValue(index, out var value) ? value : throw Bad($"memo {index} was never stored");

    object Key(object? key) => key switch
    {
        null => PickleDict.NoneKey,
        string or long or BigInteger or bool or double => key,
        _ => throw Bad($"a dict key of type {TypeName(key)}; a state_dict's keys are strings and integers"),
    };

    void SetItems(PickleDict dict, List<object?> items)
    {
        if (items.Count % 2 != 0) throw Bad("SETITEMS with an odd number of items");
        for (int i = 0; i < items.Count; i += 2) dict[Key(items[i])] = items[i + 1];
    }

    List<object?> List(object? target, string op) => target as List<object?> ?? throw Bad($"{op} on a {TypeName(target)}, not a list");

    PickleDict Dict(object? target, string op) => target as PickleDict ?? throw Bad($"{op} on a {TypeName(target)}, not a dict");

    // --- the stack ---

    void Push(object? value) => stack.Add(value);

    object? Pop()
    {
        if (stack.Count == 0 || (marks.Count > 0 && stack.Count <= marks.Peek())) throw Bad("stack underflow");
        var value = stack[^1];
        stack.RemoveAt(stack.Count - 1);
        return value;
    }

    object? Peek() =>
        stack.Count == 0 || (marks.Count > 0 && stack.Count <= marks.Peek()) ? throw Bad("stack underflow") : stack[^1];

    List<object?> PopMark()
    {
        if (marks.Count == 0) throw Bad("no MARK to pop to");
        int mark = marks.Pop();
        var items = stack.GetRange(mark, stack.Count - mark);
        stack.RemoveRange(mark, stack.Count - mark);
        return items;
    }

    // --- the only "calls": interpreted by name, never looked up ---

    PickleGlobal Global(string module, string name)
    {
        // Python 2 pickles name builtins and collections the old way; torch's names are the same in both.
        if (module == "__builtin__") module = "builtins";
        if (!IsAllowed(module, name)) throw Refuse($"{module}.{name}");
        return new PickleGlobal(module, name);
    }

    object? Reduce(object? callable, object? args)
    {
        if (callable is not PickleGlobal global) throw Bad($"REDUCE on a {TypeName(callable)}, not a class or function");
        if (args is not PickleTuple tuple) throw Bad($"REDUCE of {global} with arguments that are not a tuple");
        switch (global.Module, global.Name)
        {
            case ("collections", "OrderedDict"):
                var dict = new PickleDict();
                // OrderedDict(pairs): a list, or a tuple as TorchSharp.PyBridge writes its empty backward hooks.
                if (tuple.Count == 1 && (tuple[0] as IReadOnlyList<object?> ?? (tuple[0] as PickleTuple)?.Items) is { } pairs)
                    foreach (var pair in pairs)
                        if (pair is PickleTuple { Count: 2 } kv) dict[Key(kv[0])] = kv[1];
                        else throw Bad("OrderedDict of something other than pairs");
                else if (tuple.Count != 0) throw Bad($"OrderedDict with {tuple.Count} arguments");
                return dict;
            case ("torch._utils", "_rebuild_tensor_v2" or "_rebuild_tensor"):
                if (tuple.Count < 4) throw Bad($"{global} with {tuple.Count} arguments, not at least 4");
                if (tuple[0] is not TorchStorage storage) throw Bad($"{global} of a {TypeName(tuple[0])}, not a storage");
                return new TorchTensorRef(storage, AsLong(tuple[1], "storage offset"), Shape(tuple[2], "size"), Shape(tuple[3], "stride"));
            case ("torch._utils", "_rebuild_parameter" or "_rebuild_parameter_with_state"):
                if (tuple.Count < 1 || tuple[0] is not TorchTensorRef data) throw Bad($"{global} of something other than a tensor");
                return data;
            default:
                throw Refuse($"a call of {global}");
        }
    }

    object NewObject(object? cls, object? args)
    {
        if (cls is PickleGlobal { Module: "collections", Name: "OrderedDict" } && args is PickleTuple { Count: 0 }) return new PickleDict();
        throw Refuse($"a new {TypeName(cls)} (NEWOBJ)");
    }

    void Build(object? target, object? state)
    {
        // OrderedDict's state is its __dict__: a state_dict's `_metadata` (module versions). Kept out of the result.
        if (target is PickleDict && state is PickleDict or PickleTuple or null) return;
        throw Refuse($"setting the state of a {TypeName(target)} (BUILD)");
    }

    object Persistent(object? id)
    {
        if (persistentLoad == null) throw Bad("a persistent id, but this pickle is read without storages");
        return persistentLoad(id);
    }

    long AsLong(object? value, string what) => value as long? ?? throw Bad($"the {what} is a {TypeName(value)}, not an integer");

    long[] Shape(object? value, string what)
    {
        if (value is not PickleTuple tuple) throw Bad($"the tensor {what} is a {TypeName(value)}, not a tuple");
        return [.. tuple.Items.Select(v => AsLong(v, what))];
    }

    /// <summary>A short name of an unpickled value's type, for messages.</summary>
    public static string TypeName(object? value) => value switch
    {
        null => "None",
        bool => "bool",
        long or BigInteger => "int",
        double => "float",
        string => "str",
        byte[] => "bytes",
        PickleTuple => "tuple",
        List<object?> => "list",
        PickleDict => "dict",
        PickleGlobal g => g.ToString(),
        TorchStorage => "storage",
        TorchTensorRef => "tensor",
        _ => value.GetType().Name,
    };
}
