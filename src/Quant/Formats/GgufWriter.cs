using System.Runtime.InteropServices;
using System.Text;

namespace BitMoe.Quant.Formats;

/// <summary>
/// Builds a GGUF v3 file: metadata in the order added, then tensor infos and data in the order
/// added, each tensor's data padded to the alignment. <c>general.alignment</c> (uint32) is
/// appended with the value 32 unless the caller added it. Everything is checked before the
/// output is opened, and the file is written through a temporary file renamed at the end
/// (<see cref="AtomicFile"/>), so a failure never leaves a partial file behind.
/// </summary>
public sealed class GgufWriter
{
    private sealed record Pending(string Name, long[] Dims, uint TypeId, byte[]? Bytes, Action<Stream>? WriteBytes);

    private readonly List<KeyValuePair<string, GgufValue>> _metadata = [];
    private readonly List<Pending> _tensors = [];

    public GgufWriter(GgmlTypeTable? types = null) => Types = types ?? GgmlTypeTable.Default;

    public GgmlTypeTable Types { get; }
    public IReadOnlyList<KeyValuePair<string, GgufValue>> Metadata => _metadata;
    public int TensorCount => _tensors.Count;

    /// <summary>Adds a metadata pair (duplicate keys are reported by <see cref="Write"/>).</summary>
    public GgufWriter Add(string key, GgufValue value)
    {
        ArgumentNullException.ThrowIfNull(key);
        ArgumentNullException.ThrowIfNull(value);
        _metadata.Add(new(key, value));
        return this;
    }

    /// <summary>Adds a tensor whose bytes are in memory. Dims are in GGUF order (ne[0] innermost).</summary>
    public GgufWriter AddTensor(string name, long[] dims, uint typeId, byte[] data)
    {
        ArgumentNullException.ThrowIfNull(data);
        return AddPending(new Pending(name, dims, typeId, data, null));
    }

    public GgufWriter AddTensor(string name, long[] dims, GgmlType type, byte[] data) => AddTensor(name, dims, (uint)type, data);

    /// <summary>Adds a tensor whose bytes <paramref name="writeData"/> writes into the output stream when the
    /// file is written; it must write exactly the type's byte size for <paramref name="dims"/>.</summary>
    public GgufWriter AddTensor(string name, long[] dims, uint typeId, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(writeData);
        return AddPending(new Pending(name, dims, typeId, null, writeData));
    }

    public GgufWriter AddTensor(string name, long[] dims, GgmlType type, Action<Stream> writeData) => AddTensor(name, dims, (uint)type, writeData);

    private GgufWriter AddPending(Pending p)
    {
        ArgumentNullException.ThrowIfNull(p.Name);
        ArgumentNullException.ThrowIfNull(p.Dims);
        _tensors.Add(p with { Dims = (long[])p.Dims.Clone() });
        return this;
    }

    /// <summary>Writes the file. <paramref name="progress"/> is called after each tensor with (done, total, name).</summary>
    public void Write(string path, Action<int, int, string>? progress = null)
    {
        BitMoeException Fail(string message, Exception? inner = null) =>
            inner == null ? new($"{path}: {message}") : new($"{path}: {message}", inner);

        // Metadata: unique keys, a valid alignment.
        var metadata = new List<KeyValuePair<string, GgufValue>>(_metadata);
        var keys = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (key, _) in metadata)
            if (!keys.Add(key)) throw Fail($"duplicate metadata key '{key}'");
        uint alignment = GgufFile.DefaultAlignment;
        var given = metadata.FirstOrDefault(kv => kv.Key == GgufFile.AlignmentKey).Value;
        if (given != null)
        {
            if (given.Type != GgufValueType.UInt32)
                throw Fail($"key '{GgufFile.AlignmentKey}' has type {given.TypeText}, expected uint32");
            alignment = (uint)given.Value;
            if (alignment == 0 || (alignment & (alignment - 1)) != 0)
                throw Fail($"{GgufFile.AlignmentKey} {alignment} is not a power of two");
        }
        else metadata.Add(new(GgufFile.AlignmentKey, GgufValue.UInt32(alignment)));

        // Tensors: unique names, known types, dims that fit, byte arrays of the right size.
        var names = new HashSet<string>(StringComparer.Ordinal);
        var sizes = new long[_tensors.Count];
        var offsets = new long[_tensors.Count];
        long running = 0;
        for (int i = 0; i < _tensors.Count; i++)
        {
            var t = _tensors[i];
            if (t.Name.Length == 0) throw Fail($"tensor #{i} has an empty name");
            if (!names.Add(t.Name)) throw Fail($"duplicate tensor name '{t.Name}'");
            if (t.Dims.Length == 0 || t.Dims.Length > GgufFile.MaxDims)
                throw Fail($"tensor '{t.Name}' has {t.Dims.Length} dims (GGUF allows 1 to {GgufFile.MaxDims})");
            if (!Types.TryGet(t.TypeId, out var info)) throw Fail($"tensor '{t.Name}' has unknown ggml type {t.TypeId}");
            if (!info.TryByteSize(t.Dims, out long size, out string? error)) throw Fail($"tensor '{t.Name}': {error}");
            if (t.Bytes != null && t.Bytes.LongLength != size)
                throw Fail($"tensor '{t.Name}' holds {t.Bytes.LongLength} bytes but dims {GgmlTypeInfo.DimsText(t.Dims)} of {info.Name} need {size}");
            sizes[i] = size;
            offsets[i] = running;
            running = GgufFile.AlignUp(running + size, alignment);
        }

        byte[] header = BuildHeader(metadata, offsets, alignment);
        var zeros = new byte[alignment];

        AtomicFile.Write(path, stream =>
        {
            stream.Write(header);
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                if (t.Bytes != null) stream.Write(t.Bytes);
                else
                {
                    var counter = new CountingStream(stream);
                    try { t.WriteBytes!(counter); }
                    catch (Exception e) when (e is not BitMoeException)
                    {
                        throw Fail($"writing tensor '{t.Name}' failed ({e.Message})", e);
                    }
                    if (counter.Written != sizes[i])
                        throw Fail($"tensor '{t.Name}': the data callback wrote {counter.Written} bytes, expected {sizes[i]}");
                }
                long pad = GgufFile.AlignUp(sizes[i], alignment) - sizes[i];
                stream.Write(zeros, 0, (int)pad);
                progress?.Invoke(i + 1, _tensors.Count, t.Name);
            }
        });
    }

    private byte[] BuildHeader(List<KeyValuePair<string, GgufValue>> metadata, long[] offsets, uint alignment)
    {
        var ms = new MemoryStream();
        using (var w = new BinaryWriter(ms, new UTF8Encoding(false), leaveOpen: true))
        {
            w.Write(GgufFile.Magic);
            w.Write(GgufFile.SupportedVersion);
            w.Write((ulong)_tensors.Count);
            w.Write((ulong)metadata.Count);
            foreach (var (key, value) in metadata)
            {
                WriteString(w, key);
                w.Write((uint)value.Type);
                if (value.IsArray)
                {
                    w.Write((uint)value.ElementType);
                    w.Write((ulong)value.Count);
                }
                WriteRaw(w, value.Value);
            }
            for (int i = 0; i < _tensors.Count; i++)
            {
                var t = _tensors[i];
                WriteString(w, t.Name);
                w.Write((uint)t.Dims.Length);
                foreach (long d in t.Dims) w.Write((ulong)d);
                w.Write(t.TypeId);
                w.Write((ulong)offsets[i]);
            }
            long pad = GgufFile.AlignUp(ms.Length, alignment) - ms.Length;
            for (long k = 0; k < pad; k++) w.Write((byte)0);
        }
        return ms.ToArray();
    }

    private static void WriteString(BinaryWriter w, string s)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(s);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static void WriteRaw(BinaryWriter w, object v)
    {
        switch (v)
        {
            case byte x: w.Write(x); break;
            case sbyte x: w.Write(x); break;
            case ushort x: w.Write(x); break;
            case short x: w.Write(x); break;
            case uint x: w.Write(x); break;
            case int x: w.Write(x); break;
            case ulong x: w.Write(x); break;
            case long x: w.Write(x); break;
            case float x: w.Write(x); break;
            case double x: w.Write(x); break;
            case bool x: w.Write((byte)(x ? 1 : 0)); break;
            case string x: WriteString(w, x); break;
            case string[] a: foreach (var s in a) WriteString(w, s); break;
            case bool[] a: foreach (var b in a) w.Write((byte)(b ? 1 : 0)); break;
            case byte[] a: w.Write(a); break;
            case sbyte[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case ushort[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case short[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case uint[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case int[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case ulong[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case long[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case float[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            case double[] a: w.Write(MemoryMarshal.AsBytes(a.AsSpan())); break;
            default: throw new InvalidOperationException($"unexpected GGUF value {v.GetType().Name}");
        }
    }

    /// <summary>Write-only pass-through that counts bytes and leaves the output open when disposed.</summary>
    private sealed class CountingStream(Stream inner) : Stream
    {
        public long Written { get; private set; }
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => Written; set => throw new NotSupportedException(); }
        public override void Flush() => inner.Flush();
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) { inner.Write(buffer, offset, count); Written += count; }
        public override void Write(ReadOnlySpan<byte> buffer) { inner.Write(buffer); Written += buffer.Length; }
        public override void WriteByte(byte value) { inner.WriteByte(value); Written++; }
    }
}
