using System.Globalization;

namespace BitMoe.Quant.Formats;

/// <summary>
/// ggml tensor type ids as stored in a GGUF tensor info (ids and block layouts follow llama.cpp's
/// ggml.h / ggml-common.h). Ids 4, 5, 31..33 and 36..38 are retired or repacked layouts and are
/// not listed. BitMoe's own row-based ternary types live at 1000 and above and are registered
/// through <see cref="GgmlTypeTable.With(uint, string, Func{long[], long})"/>.
/// </summary>
public enum GgmlType : uint
{
    F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
    Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
    IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21, IQ2_S = 22, IQ4_XS = 23,
    I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28, IQ1_M = 29, BF16 = 30,
    TQ1_0 = 34, TQ2_0 = 35,
}

/// <summary>
/// How many bytes a tensor of one ggml type takes. Block types store <see cref="BlockSize"/>
/// elements of the innermost dimension (ne[0]) in <see cref="BytesPerBlock"/> bytes, so ne[0]
/// must be a multiple of the block size. Types with a <see cref="SizeResolver"/> (BitMoe's
/// row-based formats) compute the byte size from the dims themselves.
/// </summary>
public sealed record GgmlTypeInfo(uint Id, string Name, int BlockSize, int BytesPerBlock, Func<long[], long>? SizeResolver = null)
{
    /// <summary>
    /// Byte size of a tensor with GGUF dims (ne[0] innermost). Returns false with a short reason
    /// (no file name) when the dims do not fit the type or the size overflows.
    /// </summary>
    public bool TryByteSize(long[] dims, out long bytes, out string? error)
    {
        bytes = 0;
        error = null;
        long elements = 1;
        foreach (long d in dims)
        {
            if (d < 0) { error = $"dimension {d} is negative"; return false; }
            if (d != 0 && elements > long.MaxValue / d) { error = $"dims product overflows ({DimsText(dims)})"; return false; }
            elements *= d;
        }
        if (SizeResolver != null)
        {
            try { bytes = SizeResolver(dims); }
            catch (OverflowException) { error = $"dims product overflows ({DimsText(dims)}) for type {Name}"; return false; }
            catch (ArgumentException e) { error = $"dims {DimsText(dims)} do not fit type {Name} ({e.Message})"; return false; }
            if (bytes < 0) { error = $"dims {DimsText(dims)} do not fit type {Name}"; return false; }
            return true;
        }
        long ne0 = dims.Length == 0 ? 1 : dims[0];
        if (ne0 % BlockSize != 0)
        {
            error = $"row length {ne0} is not a multiple of the {Name} block size {BlockSize}";
            return false;
        }
        long blocks = elements / BlockSize;
        if (blocks > long.MaxValue / BytesPerBlock) { error = $"dims product overflows ({DimsText(dims)}) for type {Name}"; return false; }
        bytes = blocks * BytesPerBlock;
        return true;
    }

    internal static string DimsText(long[] dims) => "[" + string.Join(", ", dims) + "]";
}

/// <summary>
/// The ggml types a reader or writer accepts. <see cref="Default"/> holds llama.cpp's types;
/// <see cref="With(uint, string, Func{long[], long})"/> returns a copy with one more (custom) type.
/// Tables are immutable, so one can be shared between threads.
/// </summary>
public sealed class GgmlTypeTable
{
    private readonly Dictionary<uint, GgmlTypeInfo> _types;

    public static GgmlTypeTable Default { get; } = new(new Dictionary<uint, GgmlTypeInfo>
    {
        [0] = new(0, "F32", 1, 4),
        [1] = new(1, "F16", 1, 2),
        [2] = new(2, "Q4_0", 32, 18),
        [3] = new(3, "Q4_1", 32, 20),
        [6] = new(6, "Q5_0", 32, 22),
        [7] = new(7, "Q5_1", 32, 24),
        [8] = new(8, "Q8_0", 32, 34),
        [9] = new(9, "Q8_1", 32, 36),
        [10] = new(10, "Q2_K", 256, 84),
        [11] = new(11, "Q3_K", 256, 110),
        [12] = new(12, "Q4_K", 256, 144),
        [13] = new(13, "Q5_K", 256, 176),
        [14] = new(14, "Q6_K", 256, 210),
        [15] = new(15, "Q8_K", 256, 292),
        [16] = new(16, "IQ2_XXS", 256, 66),
        [17] = new(17, "IQ2_XS", 256, 74),
        [18] = new(18, "IQ3_XXS", 256, 98),
        [19] = new(19, "IQ1_S", 256, 50),
        [20] = new(20, "IQ4_NL", 32, 18),
        [21] = new(21, "IQ3_S", 256, 114),
        [22] = new(22, "IQ2_S", 256, 82),
        [23] = new(23, "IQ4_XS", 256, 136),
        [24] = new(24, "I8", 1, 1),
        [25] = new(25, "I16", 1, 2),
        [26] = new(26, "I32", 1, 4),
        [27] = new(27, "I64", 1, 8),
        [28] = new(28, "F64", 1, 8),
        [29] = new(29, "IQ1_M", 256, 56),
        [30] = new(30, "BF16", 1, 2),
        [34] = new(34, "TQ1_0", 256, 54),
        [35] = new(35, "TQ2_0", 256, 66),
    });

    private GgmlTypeTable(Dictionary<uint, GgmlTypeInfo> types) => _types = types;

    public IEnumerable<GgmlTypeInfo> All => _types.Values.OrderBy(t => t.Id);

    public bool TryGet(uint id, out GgmlTypeInfo info) => _types.TryGetValue(id, out info!);

    public GgmlTypeInfo? Find(uint id) => _types.GetValueOrDefault(id);

    /// <summary>The type's name, or "type N" for an id the table does not know.</summary>
    public string NameOf(uint id) => _types.TryGetValue(id, out var t) ? t.Name : $"type {id}";

    /// <summary>A copy of this table with a type whose byte size comes from <paramref name="byteSize"/>
    /// (given the GGUF dims, ne[0] innermost; return a negative number or throw ArgumentException
    /// when the dims do not fit the type). Replaces an existing type with the same id.</summary>
    public GgmlTypeTable With(uint id, string name, Func<long[], long> byteSize)
    {
        ArgumentNullException.ThrowIfNull(byteSize);
        return With(new GgmlTypeInfo(id, name, 1, 0, byteSize));
    }

    /// <summary>A copy of this table with a block-based type.</summary>
    public GgmlTypeTable With(uint id, string name, int blockSize, int bytesPerBlock)
    {
        if (blockSize <= 0 || bytesPerBlock <= 0) throw new ArgumentOutOfRangeException(nameof(blockSize), "block size and bytes per block must be positive");
        return With(new GgmlTypeInfo(id, name, blockSize, bytesPerBlock));
    }

    public GgmlTypeTable With(GgmlTypeInfo info)
    {
        ArgumentException.ThrowIfNullOrEmpty(info.Name);
        var copy = new Dictionary<uint, GgmlTypeInfo>(_types) { [info.Id] = info };
        return new GgmlTypeTable(copy);
    }
}

/// <summary>GGUF metadata value types (gguf_type in llama.cpp).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>
/// One typed GGUF metadata value. <see cref="Value"/> is the boxed scalar (byte, sbyte, ushort,
/// short, uint, int, float, bool, ulong, long, double), a string, or for an array a T[] of those
/// (<see cref="ElementType"/> tells which). Build values with the static factories.
/// </summary>
public sealed class GgufValue
{
    public GgufValueType Type { get; }
    /// <summary>The element type of an array; equal to <see cref="Type"/> for a scalar.</summary>
    public GgufValueType ElementType { get; }
    public object Value { get; }

    private GgufValue(GgufValueType type, GgufValueType elementType, object value)
    {
        Type = type;
        ElementType = elementType;
        Value = value;
    }

    private static GgufValue Scalar(GgufValueType t, object v) => new(t, t, v);

    public static GgufValue UInt8(byte v) => Scalar(GgufValueType.UInt8, v);
    public static GgufValue Int8(sbyte v) => Scalar(GgufValueType.Int8, v);
    public static GgufValue UInt16(ushort v) => Scalar(GgufValueType.UInt16, v);
    public static GgufValue Int16(short v) => Scalar(GgufValueType.Int16, v);
    public static GgufValue UInt32(uint v) => Scalar(GgufValueType.UInt32, v);
    public static GgufValue Int32(int v) => Scalar(GgufValueType.Int32, v);
    public static GgufValue UInt64(ulong v) => Scalar(GgufValueType.UInt64, v);
    public static GgufValue Int64(long v) => Scalar(GgufValueType.Int64, v);
    public static GgufValue Float32(float v) => Scalar(GgufValueType.Float32, v);
    public static GgufValue Float64(double v) => Scalar(GgufValueType.Float64, v);
    public static GgufValue Bool(bool v) => Scalar(GgufValueType.Bool, v);
    public static GgufValue String(string v) => Scalar(GgufValueType.String, v ?? throw new ArgumentNullException(nameof(v)));

    /// <summary>An array of byte, sbyte, ushort, short, uint, int, float, bool, string, ulong, long or double.
    /// The array is kept, not copied.</summary>
    public static GgufValue Array<T>(T[] items)
    {
        ArgumentNullException.ThrowIfNull(items);
        var et = TypeOf(typeof(T)) ?? throw new ArgumentException($"GGUF arrays cannot hold {typeof(T).Name}");
        if (items is string[] s && s.Any(x => x == null)) throw new ArgumentException("GGUF string arrays cannot hold null");
        return new GgufValue(GgufValueType.Array, et, items);
    }

    internal static GgufValue FromArray(GgufValueType elementType, System.Array items) => new(GgufValueType.Array, elementType, items);
    internal static GgufValue FromScalar(GgufValueType type, object v) => Scalar(type, v);

    public bool IsArray => Type == GgufValueType.Array;

    /// <summary>Number of elements of an array (1 for a scalar).</summary>
    public int Count => Value is System.Array a ? a.Length : 1;

    /// <summary>"uint32", "string", "array of string", ...</summary>
    public string TypeText => IsArray ? "array of " + Name(ElementType) : Name(Type);

    public static string Name(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 => "uint8", GgufValueType.Int8 => "int8", GgufValueType.UInt16 => "uint16",
        GgufValueType.Int16 => "int16", GgufValueType.UInt32 => "uint32", GgufValueType.Int32 => "int32",
        GgufValueType.Float32 => "float32", GgufValueType.Bool => "bool", GgufValueType.String => "string",
        GgufValueType.Array => "array", GgufValueType.UInt64 => "uint64", GgufValueType.Int64 => "int64",
        GgufValueType.Float64 => "float64", _ => $"type {(uint)t}",
    };

    /// <summary>The GGUF value type a CLR type maps to (byte -> uint8, string -> string, ...), or null.</summary>
    public static GgufValueType? TypeOf(Type t) =>
        t == typeof(byte) ? GgufValueType.UInt8 : t == typeof(sbyte) ? GgufValueType.Int8 :
        t == typeof(ushort) ? GgufValueType.UInt16 : t == typeof(short) ? GgufValueType.Int16 :
        t == typeof(uint) ? GgufValueType.UInt32 : t == typeof(int) ? GgufValueType.Int32 :
        t == typeof(float) ? GgufValueType.Float32 : t == typeof(bool) ? GgufValueType.Bool :
        t == typeof(string) ? GgufValueType.String : t == typeof(ulong) ? GgufValueType.UInt64 :
        t == typeof(long) ? GgufValueType.Int64 : t == typeof(double) ? GgufValueType.Float64 : null;

    /// <summary>Byte size of one element of a fixed-size type (0 for string/array).</summary>
    internal static int FixedSize(GgufValueType t) => t switch
    {
        GgufValueType.UInt8 or GgufValueType.Int8 or GgufValueType.Bool => 1,
        GgufValueType.UInt16 or GgufValueType.Int16 => 2,
        GgufValueType.UInt32 or GgufValueType.Int32 or GgufValueType.Float32 => 4,
        GgufValueType.UInt64 or GgufValueType.Int64 or GgufValueType.Float64 => 8,
        _ => 0,
    };

    public override string ToString()
    {
        if (Value is System.Array a)
        {
            var items = a.Cast<object>().Take(8).Select(Format);
            return "[" + string.Join(", ", items) + (a.Length > 8 ? $", ... ({a.Length} items)" : "") + "]";
        }
        return Format(Value);
    }

    private static string Format(object v) => v switch
    {
        string s => "\"" + s + "\"",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
        _ => v.ToString() ?? "",
    };
}
