using System.IO.MemoryMappedFiles;
using System.Text.Json;
using BitMoe.Kernels;

namespace BitMoe.Quant.Formats;

/// <summary>One tensor of a mapped file: its element type, shape and where its bytes are.</summary>
public sealed unsafe class TensorView
{
    public required string Name { get; init; }
    public required string File { get; init; }
    /// <summary>Element type as the file spells it (F32, F16, BF16, I32, ...).</summary>
    public required string TypeName { get; init; }
    public required long[] Shape { get; init; }
    public required byte* Data { get; init; }
    public required long ByteLength { get; init; }

    /// <summary>
    /// True when <see cref="Data"/> points into a read-only file mapping (a GGUF or safetensors file), false for memory
    /// the loader allocated (a reordered copy). Only a mapped view may <see cref="ReleaseMappedPages"/>.
    /// </summary>
    public bool IsFileMapped { get; init; }

    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>
    /// For a tensor copied elsewhere at load: drops the whole 4 KiB pages inside its bytes from the process's page
    /// tables (Linux <c>madvise(MADV_DONTNEED)</c>; elsewhere nothing), so that they stop counting in its resident
    /// memory. The file is mapped read-only, so nothing is lost: the pages stay in the page cache and a later read
    /// maps them again. Does nothing for a view that is not <see cref="IsFileMapped"/> (it would zero the memory).
    /// </summary>
    public void ReleaseMappedPages()
    {
        if (!IsFileMapped) return;
        const long page = 4096;
        long start = ((long)Data + page - 1) / page * page, end = ((long)Data + ByteLength) / page * page;
        if (end > start) MemoryAdvice.DropMappedPages((void*)start, (nuint)(end - start));
    }

    /// <summary>The float element type, or an error naming the tensor when it is not F32/F16/BF16.</summary>
    public DType FloatType => TypeName switch
    {
        "F32" => DType.F32,
        "F16" => DType.F16,
        "BF16" => DType.BF16,
        _ => throw new BitMoeException($"{File}: tensor '{Name}' has dtype {TypeName}; expected F32, F16 or BF16"),
    };

    /// <summary>A small tensor (a norm weight, a bias) widened to a managed float array.</summary>
    public float[] ToFloatArray()
    {
        var result = new float[ElementCount];
        FloatGemv.ToSingle(Data, FloatType, 0, result);
        return result;
    }

    public int[] ToInt32Array()
    {
        if (TypeName != "I32") throw new BitMoeException($"{File}: tensor '{Name}' has dtype {TypeName}; expected I32");
        return new ReadOnlySpan<int>(Data, checked((int)ElementCount)).ToArray();
    }

    public string ShapeText => "[" + string.Join(", ", Shape) + "]";
}

/// <summary>
/// A .safetensors file read through a memory map: an 8-byte little-endian header length, a JSON
/// header of tensor names, dtypes, shapes and byte ranges, then the raw data. Everything the
/// header claims is checked against the file's real size before any tensor is handed out.
/// </summary>
public sealed unsafe class SafetensorsFile : IDisposable
{
    private static readonly Dictionary<string, int> ElementSizes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2,
        ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1, ["U16"] = 2, ["U32"] = 4, ["U64"] = 8,
        ["F8_E4M3"] = 1, ["F8_E5M2"] = 1,
    };

    private readonly MemoryMappedFile? _map;
    private readonly MemoryMappedViewAccessor? _view;
    private byte* _base;

    public string Path { get; }
    public IReadOnlyDictionary<string, TensorView> Tensors { get; }
    public IReadOnlyDictionary<string, string> Metadata { get; }

    private SafetensorsFile(string path)
    {
        Path = path;
        var tensors = new Dictionary<string, TensorView>(StringComparer.Ordinal);
        var metadata = new Dictionary<string, string>();
        if (!System.IO.File.Exists(path)) throw new BitMoeException($"{path}: file not found");
        long fileLength = new FileInfo(path).Length;
        if (fileLength < 8) throw new BitMoeException($"{path}: truncated safetensors file ({fileLength} bytes; the 8-byte header length is missing)");

        try
        {
            _map = MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
            _view = _map.CreateViewAccessor(0, 0, MemoryMappedFileAccess.Read);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new BitMoeException($"{path}: cannot map file ({e.Message})");
        }
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref _base);
        _base += _view.PointerOffset;

        ulong headerLength = *(ulong*)_base;
        if (headerLength > (ulong)(fileLength - 8))
            throw new BitMoeException($"{path}: header length {headerLength} runs past the end of the file ({fileLength} bytes)");
        long dataStart = 8 + (long)headerLength;
        long dataLength = fileLength - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(new ReadOnlyMemory<byte>(new ReadOnlySpan<byte>(_base + 8, (int)headerLength).ToArray())); }
        catch (JsonException e) { throw new BitMoeException($"{path}: the safetensors header is not valid JSON ({e.Message})"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object)
                throw new BitMoeException($"{path}: the safetensors header is not a JSON object");
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                if (prop.Name == "__metadata__")
                {
                    if (prop.Value.ValueKind == JsonValueKind.Object)
                        foreach (var m in prop.Value.EnumerateObject())
                            metadata[m.Name] = m.Value.ValueKind == JsonValueKind.String ? m.Value.GetString()! : m.Value.GetRawText();
                    continue;
                }
                tensors[prop.Name] = ParseEntry(path, prop, dataStart, dataLength);
            }
        }
        Tensors = tensors;
        Metadata = metadata;
    }

    private TensorView ParseEntry(string path, JsonProperty prop, long dataStart, long dataLength)
    {
        string name = prop.Name;
        var v = prop.Value;
        if (v.ValueKind != JsonValueKind.Object
            || !v.TryGetProperty("dtype", out var dtypeEl) || dtypeEl.ValueKind != JsonValueKind.String
            || !v.TryGetProperty("shape", out var shapeEl) || shapeEl.ValueKind != JsonValueKind.Array
            || !v.TryGetProperty("data_offsets", out var offEl) || offEl.ValueKind != JsonValueKind.Array || offEl.GetArrayLength() != 2)
            throw new BitMoeException($"{path}: tensor '{name}' has a malformed header entry (needs dtype, shape, data_offsets)");
        string dtype = dtypeEl.GetString()!;
        if (!ElementSizes.TryGetValue(dtype, out int elemSize))
            throw new BitMoeException($"{path}: tensor '{name}' has unknown dtype '{dtype}'");
        var shape = new long[shapeEl.GetArrayLength()];
        int k = 0;
        foreach (var d in shapeEl.EnumerateArray())
        {
            if (!d.TryGetInt64(out long dim) || dim < 0) throw new BitMoeException($"{path}: tensor '{name}' has an invalid shape");
            shape[k++] = dim;
        }
        if (!offEl[0].TryGetInt64(out long begin) || !offEl[1].TryGetInt64(out long end) || begin < 0 || end < begin)
            throw new BitMoeException($"{path}: tensor '{name}' has invalid data_offsets");
        long count = shape.Aggregate(1L, (a, b) => a * b);
        if (end - begin != count * elemSize)
            throw new BitMoeException($"{path}: tensor '{name}' holds {end - begin} bytes but shape {string.Join("x", shape)} of {dtype} needs {count * elemSize}");
        if (end > dataLength)
            throw new BitMoeException($"{path}: truncated file: tensor '{name}' ends at byte {dataStart + end} but the file has {dataStart + dataLength}");
        return new TensorView
        {
            Name = name, File = path, TypeName = dtype, Shape = shape,
            Data = _base + dataStart + begin, ByteLength = end - begin, IsFileMapped = true,
        };
    }

    public static SafetensorsFile Open(string path) => new(path);

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
