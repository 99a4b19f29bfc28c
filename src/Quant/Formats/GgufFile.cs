using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Text;

namespace BitMoe.Quant.Formats;

/// <summary>One tensor of a mapped GGUF file: its ggml type, dims and where its bytes are.</summary>
public sealed unsafe class GgufTensor
{
    public required string Name { get; init; }
    public required string File { get; init; }
    /// <summary>The ggml type id as stored (see <see cref="GgmlType"/>; BitMoe's own ids are 1000 and up).</summary>
    public required uint TypeId { get; init; }
    public required string TypeName { get; init; }
    /// <summary>GGUF dims: ne[0] is the innermost (contiguous) dimension.</summary>
    public required long[] Dims { get; init; }
    /// <summary>Offset of the data from the start of the data section.</summary>
    public required long Offset { get; init; }
    public required byte* Data { get; init; }
    public required long ByteSize { get; init; }

    public GgmlType Type => (GgmlType)TypeId;
    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);
    /// <summary>The dims outermost first (row-major, as safetensors and PyTorch spell shapes).</summary>
    public long[] Shape => Dims.Reverse().ToArray();
    public string DimsText => GgmlTypeInfo.DimsText(Dims);

    /// <summary>The tensor's bytes (tensors over 2 GiB must be read through <see cref="Data"/>).</summary>
    public ReadOnlySpan<byte> Bytes => ByteSize <= int.MaxValue
        ? new ReadOnlySpan<byte>(Data, (int)ByteSize)
        : throw new BitMoeException($"{File}: tensor '{Name}' has {ByteSize} bytes, too many for a span");

    /// <summary>A plain element-type tensor (F32, F16, BF16, F64, I8..I64) as a <see cref="TensorView"/> with a row-major shape.</summary>
    public TensorView ToTensorView()
    {
        string dtype = TypeId switch
        {
            0 => "F32", 1 => "F16", 30 => "BF16", 28 => "F64", 24 => "I8", 25 => "I16", 26 => "I32", 27 => "I64",
            _ => throw new BitMoeException($"{File}: tensor '{Name}' has type {TypeName}; only plain element types convert to a tensor view"),
        };
        return new TensorView { Name = Name, File = File, TypeName = dtype, Shape = Shape, Data = Data, ByteLength = ByteSize, IsFileMapped = true };
    }
}

/// <summary>
/// A GGUF v3 file read through a memory map: a 24-byte header (magic "GGUF", version, tensor
/// count, metadata count), typed metadata key/value pairs, tensor infos (name, dims, ggml type,
/// offset), then the data section, which starts at the header's end rounded up to
/// <c>general.alignment</c> (default 32). Everything the header claims is checked against the
/// file's real size before anything is handed out; every fault is a one-line
/// <see cref="BitMoeException"/> naming the file.
/// </summary>
public sealed unsafe class GgufFile : IDisposable
{
    public const uint Magic = 0x46554747; // "GGUF" read as a little-endian uint32
    public const uint SupportedVersion = 3;
    public const uint DefaultAlignment = 32;
    public const int HeaderSize = 24;
    public const int MaxDims = 4;
    public const string AlignmentKey = "general.alignment";

    private const int MinKvSize = 8 + 4 + 1;              // empty key, type, one-byte value
    private const int MinTensorInfoSize = 8 + 4 + 8 + 4 + 8; // empty name, n_dims, one dim, type, offset

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;
    private long _pos;
    private string _ctx = "";

    public string Path { get; }
    public uint Version { get; }
    public long FileLength { get; }
    public uint Alignment { get; }
    /// <summary>Absolute file offset of the data section.</summary>
    public long DataOffset { get; }
    public GgmlTypeTable Types { get; }
    /// <summary>Metadata in file order.</summary>
    public IReadOnlyDictionary<string, GgufValue> Metadata { get; }
    /// <summary>Tensors in file order.</summary>
    public IReadOnlyDictionary<string, GgufTensor> Tensors { get; }

    public static GgufFile Open(string path, GgmlTypeTable? types = null) => new(path, types ?? GgmlTypeTable.Default);

    private GgufFile(string path, GgmlTypeTable types)
    {
        Path = path;
        Types = types;
        if (!System.IO.File.Exists(path)) throw new BitMoeException($"{path}: file not found");
        FileLength = new FileInfo(path).Length;
        if (FileLength < HeaderSize)
            throw Fail($"file is shorter than the GGUF header ({FileLength} bytes, needs {HeaderSize})");
        try
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            _map?.Dispose();
            throw new BitMoeException($"{path}: cannot map file ({e.Message})");
        }
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
        _base += _view.PointerOffset;

        try
        {
            var metadata = new OrderedDictionary<string, GgufValue>(StringComparer.Ordinal);
            var tensors = new OrderedDictionary<string, GgufTensor>(StringComparer.Ordinal);
            Metadata = metadata;
            Tensors = tensors;
            (Version, Alignment, DataOffset) = Parse(metadata, tensors);
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    private (uint version, uint alignment, long dataOffset) Parse(OrderedDictionary<string, GgufValue> metadata, OrderedDictionary<string, GgufTensor> tensors)
    {
        _ctx = "truncated header";
        uint magic = Read<uint>();
        if (magic != Magic)
            throw Fail($"bad magic 0x{magic:X8} (expected \"GGUF\"; not a GGUF file)");
        uint version = Read<uint>();
        if (version != SupportedVersion)
        {
            string hint = version == 0x03000000 ? "; a big-endian file?" : "";
            throw Fail($"unsupported GGUF version {version} (only version {SupportedVersion} is supported{hint})");
        }
        ulong tensorCount = Read<ulong>();
        ulong kvCount = Read<ulong>();
        long rest = FileLength - _pos;
        if (kvCount > (ulong)(rest / MinKvSize))
            throw Fail($"truncated header: metadata count {kvCount} is more than the remaining {rest} bytes can hold");
        if (tensorCount > (ulong)(rest / MinTensorInfoSize))
            throw Fail($"truncated header: tensor count {tensorCount} is more than the remaining {rest} bytes can hold");

        for (ulong i = 0; i < kvCount; i++)
        {
            _ctx = $"truncated metadata: key #{i}";
            string key = ReadString();
            _ctx = $"truncated metadata: key '{key}'";
            uint type = Read<uint>();
            var value = ReadValue(type, key);
            if (!metadata.TryAdd(key, value)) throw Fail($"duplicate metadata key '{key}'");
        }

        uint alignment = DefaultAlignment;
        if (metadata.TryGetValue(AlignmentKey, out var a))
        {
            if (a.Type != GgufValueType.UInt32)
                throw Fail($"key '{AlignmentKey}' has type {a.TypeText}, expected uint32");
            alignment = (uint)a.Value;
            if (alignment == 0 || (alignment & (alignment - 1)) != 0)
                throw Fail($"{AlignmentKey} {alignment} is not a power of two");
        }

        var infos = new List<(string name, long[] dims, uint type, ulong offset)>((int)Math.Min(tensorCount, 1 << 16));
        for (ulong i = 0; i < tensorCount; i++)
        {
            _ctx = $"truncated tensor info: tensor #{i}";
            string name = ReadString();
            _ctx = $"truncated tensor info: tensor '{name}'";
            uint nDims = Read<uint>();
            if (nDims == 0 || nDims > MaxDims)
                throw Fail($"tensor '{name}' has {nDims} dims (GGUF allows 1 to {MaxDims})");
            var dims = new long[nDims];
            for (int d = 0; d < nDims; d++)
            {
                ulong ne = Read<ulong>();
                if (ne > long.MaxValue) throw Fail($"tensor '{name}' dims product overflows (dimension {d} is {ne})");
                dims[d] = (long)ne;
            }
            uint type = Read<uint>();
            ulong offset = Read<ulong>();
            infos.Add((name, dims, type, offset));
        }

        long dataOffset = AlignUp(_pos, alignment);
        long dataLength = Math.Max(0, FileLength - dataOffset);
        foreach (var (name, dims, typeId, offset) in infos)
        {
            if (tensors.ContainsKey(name)) throw Fail($"duplicate tensor name '{name}'");
            if (!Types.TryGet(typeId, out var info))
                throw Fail($"tensor '{name}' has unknown ggml type {typeId}");
            if (!info.TryByteSize(dims, out long size, out string? error))
                throw Fail($"tensor '{name}': {error}");
            if (offset % alignment != 0)
                throw Fail($"tensor '{name}' offset {offset} is not aligned to {alignment}");
            if (offset > (ulong)dataLength)
                throw Fail($"tensor '{name}' offset past end of file (data offset {offset} + data section start {dataOffset} > file size {FileLength})");
            if (size > dataLength - (long)offset)
                throw Fail($"truncated data: tensor '{name}' ({size} bytes) ends at byte {dataOffset + (long)offset + size} but the file has {FileLength}");
            tensors.Add(name, new GgufTensor
            {
                Name = name, File = Path, TypeId = typeId, TypeName = info.Name, Dims = dims,
                Offset = (long)offset, Data = _base + dataOffset + (long)offset, ByteSize = size,
            });
        }
        return (version, alignment, dataOffset);
    }

    internal static long AlignUp(long x, long alignment) => (x + alignment - 1) / alignment * alignment;

    private BitMoeException Fail(string message) => new($"{Path}: {message}");

    private void Need(long n)
    {
        if (n > FileLength - _pos)
            throw Fail($"{_ctx} runs past the end of the file (needs {n} bytes at byte {_pos}, file has {FileLength})");
    }

    private T Read<T>() where T : unmanaged
    {
        Need(sizeof(T));
        T v = Unsafe.ReadUnaligned<T>(_base + _pos);
        _pos += sizeof(T);
        return v;
    }

    private string ReadString()
    {
        ulong len = Read<ulong>();
        if (len > (ulong)(FileLength - _pos))
            throw Fail($"{_ctx}: string length {len} runs past the end of the file (at byte {_pos - 8}, file has {FileLength})");
        if (len > int.MaxValue) throw Fail($"{_ctx}: string length {len} is too long");
        string s = Encoding.UTF8.GetString(_base + _pos, (int)len);
        _pos += (long)len;
        return s;
    }

    private GgufValue ReadValue(uint type, string key)
    {
        var t = (GgufValueType)type;
        switch (t)
        {
            case GgufValueType.UInt8: return GgufValue.FromScalar(t, Read<byte>());
            case GgufValueType.Int8: return GgufValue.FromScalar(t, Read<sbyte>());
            case GgufValueType.UInt16: return GgufValue.FromScalar(t, Read<ushort>());
            case GgufValueType.Int16: return GgufValue.FromScalar(t, Read<short>());
            case GgufValueType.UInt32: return GgufValue.FromScalar(t, Read<uint>());
            case GgufValueType.Int32: return GgufValue.FromScalar(t, Read<int>());
            case GgufValueType.UInt64: return GgufValue.FromScalar(t, Read<ulong>());
            case GgufValueType.Int64: return GgufValue.FromScalar(t, Read<long>());
            case GgufValueType.Float32: return GgufValue.FromScalar(t, Read<float>());
            case GgufValueType.Float64: return GgufValue.FromScalar(t, Read<double>());
            case GgufValueType.Bool: return GgufValue.FromScalar(t, Read<byte>() != 0);
            case GgufValueType.String: return GgufValue.FromScalar(t, ReadString());
            case GgufValueType.Array: return ReadArray(key);
            default: throw Fail($"unknown metadata value type {type} for key '{key}'");
        }
    }

    private GgufValue ReadArray(string key)
    {
        uint et = Read<uint>();
        var t = (GgufValueType)et;
        if (t == GgufValueType.Array) throw Fail($"key '{key}' is an array of arrays (not supported)");
        int elemSize = GgufValue.FixedSize(t);
        if (elemSize == 0 && t != GgufValueType.String)
            throw Fail($"unknown metadata value type {et} in the array of key '{key}'");
        ulong count = Read<ulong>();
        long rest = FileLength - _pos;
        int minSize = t == GgufValueType.String ? 8 : elemSize;
        if (count > (ulong)(rest / minSize))
            throw Fail($"{_ctx}: array count {count} runs past the end of the file (at byte {_pos - 8}, {rest} bytes left)");
        if (count > (ulong)System.Array.MaxLength) throw Fail($"{_ctx}: array count {count} is too large");
        int n = (int)count;
        System.Array items = t switch
        {
            GgufValueType.UInt8 => ReadItems<byte>(n),
            GgufValueType.Int8 => ReadItems<sbyte>(n),
            GgufValueType.UInt16 => ReadItems<ushort>(n),
            GgufValueType.Int16 => ReadItems<short>(n),
            GgufValueType.UInt32 => ReadItems<uint>(n),
            GgufValueType.Int32 => ReadItems<int>(n),
            GgufValueType.UInt64 => ReadItems<ulong>(n),
            GgufValueType.Int64 => ReadItems<long>(n),
            GgufValueType.Float32 => ReadItems<float>(n),
            GgufValueType.Float64 => ReadItems<double>(n),
            GgufValueType.Bool => ReadItems<byte>(n).Select(b => b != 0).ToArray(),
            _ => ReadStrings(n),
        };
        return GgufValue.FromArray(t, items);
    }

    private T[] ReadItems<T>(int n) where T : unmanaged
    {
        long bytes = (long)n * sizeof(T);
        Need(bytes);
        var items = new T[n];
        new ReadOnlySpan<byte>(_base + _pos, checked((int)bytes)).CopyTo(MemoryMarshal.AsBytes(items.AsSpan()));
        _pos += bytes;
        return items;
    }

    private string[] ReadStrings(int n)
    {
        var items = new string[n];
        for (int i = 0; i < n; i++) items[i] = ReadString();
        return items;
    }

    // ---- typed metadata access ----

    /// <summary>The value of a key, or an error naming the file and the key when it is missing.</summary>
    public GgufValue GetValue(string key) =>
        Metadata.TryGetValue(key, out var v) ? v : throw Fail($"missing required key '{key}'");

    /// <summary>A scalar or string value; T is byte, sbyte, ushort, short, uint, int, ulong, long, float, double, bool or string.
    /// The stored type must match exactly.</summary>
    public T Get<T>(string key) => Cast<T>(key, GetValue(key));

    /// <summary>False when the key is missing; an error when it is present with another type.</summary>
    public bool TryGet<T>(string key, out T value)
    {
        if (!Metadata.TryGetValue(key, out var v)) { value = default!; return false; }
        value = Cast<T>(key, v);
        return true;
    }

    /// <summary>An array value whose element type matches T exactly. The array is shared, not copied.</summary>
    public T[] GetArray<T>(string key) => CastArray<T>(key, GetValue(key));

    public bool TryGetArray<T>(string key, out T[] value)
    {
        if (!Metadata.TryGetValue(key, out var v)) { value = default!; return false; }
        value = CastArray<T>(key, v);
        return true;
    }

    public string GetString(string key) => Get<string>(key);
    public uint GetUInt32(string key) => Get<uint>(key);
    public int GetInt32(string key) => Get<int>(key);
    public ulong GetUInt64(string key) => Get<ulong>(key);
    public long GetInt64(string key) => Get<long>(key);
    public float GetFloat32(string key) => Get<float>(key);
    public double GetFloat64(string key) => Get<double>(key);
    public bool GetBool(string key) => Get<bool>(key);

    public bool TryGetString(string key, out string value) => TryGet(key, out value);
    public bool TryGetUInt32(string key, out uint value) => TryGet(key, out value);
    public bool TryGetInt32(string key, out int value) => TryGet(key, out value);
    public bool TryGetUInt64(string key, out ulong value) => TryGet(key, out value);
    public bool TryGetFloat32(string key, out float value) => TryGet(key, out value);
    public bool TryGetBool(string key, out bool value) => TryGet(key, out value);

    private T Cast<T>(string key, GgufValue v)
    {
        var expected = GgufValue.TypeOf(typeof(T)) ?? throw new ArgumentException($"GGUF values cannot be read as {typeof(T).Name}");
        if (v.Type != expected)
            throw Fail($"key '{key}' has type {v.TypeText}, expected {GgufValue.Name(expected)}");
        return (T)v.Value;
    }

    private T[] CastArray<T>(string key, GgufValue v)
    {
        var expected = GgufValue.TypeOf(typeof(T)) ?? throw new ArgumentException($"GGUF arrays cannot hold {typeof(T).Name}");
        if (!v.IsArray || v.ElementType != expected)
            throw Fail($"key '{key}' has type {v.TypeText}, expected array of {GgufValue.Name(expected)}");
        return (T[])v.Value;
    }

    /// <summary>A tensor by name, or an error naming the file and the tensor.</summary>
    public GgufTensor GetTensor(string name) =>
        Tensors.TryGetValue(name, out var t) ? t : throw Fail($"missing tensor '{name}'");

    public void Dispose()
    {
        if (_view != null && _base != null)
        {
            _view.SafeMemoryMappedViewHandle.ReleasePointer();
            _base = null;
        }
        _view?.Dispose();
        _map?.Dispose();
    }
}
