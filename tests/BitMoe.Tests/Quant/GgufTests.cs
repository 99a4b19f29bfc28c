using System.Buffers.Binary;
using System.Text;
using BitMoe.Quant;
using BitMoe.Quant.Formats;

namespace BitMoe.Tests.Quant;

public sealed class GgufTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "bitmoe-gguf-" + Guid.NewGuid().ToString("N"));

    public GgufTests() => Directory.CreateDirectory(_dir);

    public void Dispose()
    {
        try { Directory.Delete(_dir, recursive: true); } catch (IOException) { }
    }

    private string PathOf(string name) => Path.Combine(_dir, name);

    private static readonly float[] F32Data = [1f, -2.5f, 3.25f, 0f, 1e-7f, -1e7f];
    private static readonly Half[] F16Data = [(Half)1, (Half)(-0.5f), (Half)2, (Half)65504, (Half)0.125f];

    private static byte[] Bytes<T>(T[] items) where T : unmanaged =>
        System.Runtime.InteropServices.MemoryMarshal.AsBytes(items.AsSpan()).ToArray();

    private static byte[] Random(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static GgufWriter EveryMetadataType() => new GgufWriter()
        .Add("general.architecture", GgufValue.String("mhmoe"))
        .Add("general.name", GgufValue.String("tiny ünïcödé 模型"))
        .Add("s.empty", GgufValue.String(""))
        .Add("u8", GgufValue.UInt8(250))
        .Add("i8", GgufValue.Int8(-100))
        .Add("u16", GgufValue.UInt16(65000))
        .Add("i16", GgufValue.Int16(-30000))
        .Add("u32", GgufValue.UInt32(4_000_000_000))
        .Add("i32", GgufValue.Int32(-2_000_000_000))
        .Add("u64", GgufValue.UInt64(ulong.MaxValue))
        .Add("i64", GgufValue.Int64(long.MinValue))
        .Add("f32", GgufValue.Float32(3.14159f))
        .Add("f64", GgufValue.Float64(-2.718281828459045))
        .Add("b.true", GgufValue.Bool(true))
        .Add("b.false", GgufValue.Bool(false))
        .Add("arr.u8", GgufValue.Array(new byte[] { 0, 1, 255 }))
        .Add("arr.i8", GgufValue.Array(new sbyte[] { -128, 0, 127 }))
        .Add("arr.u16", GgufValue.Array(new ushort[] { 1, 65535 }))
        .Add("arr.i16", GgufValue.Array(new short[] { -32768, 32767 }))
        .Add("arr.u32", GgufValue.Array(new uint[] { 7, uint.MaxValue }))
        .Add("arr.i32", GgufValue.Array(new[] { -1, 0, int.MaxValue }))
        .Add("arr.u64", GgufValue.Array(new ulong[] { 0, ulong.MaxValue }))
        .Add("arr.i64", GgufValue.Array(new[] { long.MinValue, 5L }))
        .Add("arr.f32", GgufValue.Array(new[] { 0.5f, -1.25f, float.NaN, float.PositiveInfinity }))
        .Add("arr.f64", GgufValue.Array(new[] { 1e300, -1e-300 }))
        .Add("arr.bool", GgufValue.Array(new[] { true, false, true }))
        .Add("arr.str", GgufValue.Array(new[] { "<s>", "", "▁hello", "模型" }))
        .Add("arr.empty", GgufValue.Array(System.Array.Empty<int>()));

    /// <summary>A file with every metadata type and four tensors (one streamed).</summary>
    private string WriteValid(string name = "valid.gguf")
    {
        string path = PathOf(name);
        EveryMetadataType()
            .AddTensor("tensor.f32", [3, 2], GgmlType.F32, Bytes(F32Data))
            .AddTensor("tensor.f16", [5], GgmlType.F16, Bytes(F16Data))
            .AddTensor("tensor.tq2", [512, 2], GgmlType.TQ2_0, s => s.Write(Random(4 * 66, 1)))
            .AddTensor("tensor.last", [7], GgmlType.I32, Bytes(new[] { 1, 2, 3, 4, 5, 6, 7 }))
            .Write(path);
        return path;
    }

    private static int Find(byte[] file, string text)
    {
        int i = file.AsSpan().IndexOf(Encoding.UTF8.GetBytes(text));
        Assert.True(i >= 0, $"'{text}' not found in the file");
        return i;
    }

    /// <summary>Byte position just after a key's or tensor's name.</summary>
    private static int After(byte[] file, string name) => Find(file, name) + Encoding.UTF8.GetByteCount(name);

    private static void Patch(string path, Action<byte[]> change)
    {
        var bytes = File.ReadAllBytes(path);
        change(bytes);
        File.WriteAllBytes(path, bytes);
    }

    private static void PutU32(byte[] b, int at, uint v) => BinaryPrimitives.WriteUInt32LittleEndian(b.AsSpan(at), v);
    private static void PutU64(byte[] b, int at, ulong v) => BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(at), v);
    private static ulong GetU64(byte[] b, int at) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(at));

    private static BitMoeException Rejects(string path, string phrase, GgmlTypeTable? types = null)
    {
        var e = Assert.Throws<BitMoeException>(() => { using var _ = GgufFile.Open(path, types); });
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
        Assert.DoesNotContain('\n', e.Message);
        return e;
    }

    private void AssertNoOutput(string path)
    {
        Assert.False(File.Exists(path), $"{path} should not exist");
        string dir = Path.GetDirectoryName(Path.GetFullPath(path))!;
        if (Directory.Exists(dir))
            Assert.Empty(Directory.GetFiles(dir, "*.tmp-*"));
    }

    // ---- round trips ----

    [Fact]
    public void RoundTrip_EveryMetadataType()
    {
        string path = WriteValid();
        using var f = GgufFile.Open(path);
        Assert.Equal(3u, f.Version);
        Assert.Equal(path, f.Path);
        Assert.Equal(32u, f.Alignment);

        var expected = EveryMetadataType().Metadata;
        Assert.Equal(expected.Select(kv => kv.Key).Append("general.alignment"), f.Metadata.Keys);
        foreach (var (key, want) in expected)
        {
            var got = f.Metadata[key];
            Assert.Equal(want.Type, got.Type);
            Assert.Equal(want.ElementType, got.ElementType);
            if (want.Value is System.Array a) Assert.Equal(a.Cast<object>(), ((System.Array)got.Value).Cast<object>());
            else Assert.Equal(want.Value, got.Value);
        }
        Assert.Equal(32u, f.GetUInt32("general.alignment"));
        Assert.Equal("tiny ünïcödé 模型", f.GetString("general.name"));
        Assert.Equal(ulong.MaxValue, f.GetUInt64("u64"));
        Assert.Equal(long.MinValue, f.GetInt64("i64"));
        Assert.Equal(3.14159f, f.GetFloat32("f32"));
        Assert.Equal(-2.718281828459045, f.GetFloat64("f64"));
        Assert.True(f.GetBool("b.true"));
        Assert.Equal(-2_000_000_000, f.GetInt32("i32"));
        Assert.Equal((byte)250, f.Get<byte>("u8"));
        Assert.Equal(new[] { "<s>", "", "▁hello", "模型" }, f.GetArray<string>("arr.str"));
        Assert.Equal(new[] { true, false, true }, f.GetArray<bool>("arr.bool"));
        Assert.Empty(f.GetArray<int>("arr.empty"));
        Assert.Equal("array of string", f.Metadata["arr.str"].TypeText);
    }

    [Fact]
    public unsafe void RoundTrip_Tensors_AlignedData()
    {
        string path = WriteValid();
        using var f = GgufFile.Open(path);
        Assert.Equal(new[] { "tensor.f32", "tensor.f16", "tensor.tq2", "tensor.last" }, f.Tensors.Keys);
        Assert.Equal(0, f.DataOffset % 32);
        foreach (var t in f.Tensors.Values)
        {
            Assert.Equal(0, (long)(nint)t.Data % 32);
            Assert.Equal(0, t.Offset % 32);
            Assert.Equal(path, t.File);
        }

        var f32 = f.Tensors["tensor.f32"];
        Assert.Equal(GgmlType.F32, f32.Type);
        Assert.Equal("F32", f32.TypeName);
        Assert.Equal(new long[] { 3, 2 }, f32.Dims);
        Assert.Equal(new long[] { 2, 3 }, f32.Shape);
        Assert.Equal(24, f32.ByteSize);
        Assert.Equal(F32Data, f32.ToTensorView().ToFloatArray());

        var f16 = f.Tensors["tensor.f16"];
        Assert.Equal(10, f16.ByteSize);
        Assert.Equal(Bytes(F16Data), f16.Bytes.ToArray());

        var tq2 = f.GetTensor("tensor.tq2");
        Assert.Equal(0u + 35, tq2.TypeId);
        Assert.Equal("TQ2_0", tq2.TypeName);
        Assert.Equal(1024, tq2.ElementCount);
        Assert.Equal(4 * 66, tq2.ByteSize);
        Assert.Equal(Random(4 * 66, 1), tq2.Bytes.ToArray());
        Assert.Throws<BitMoeException>(() => tq2.ToTensorView());

        Assert.Equal(new[] { 1, 2, 3, 4, 5, 6, 7 }, f.Tensors["tensor.last"].ToTensorView().ToInt32Array());
        var e = Assert.Throws<BitMoeException>(() => f.GetTensor("nope"));
        Assert.Contains("missing tensor 'nope'", e.Message);
    }

    [Fact]
    public unsafe void CustomAlignment_IsHonoured()
    {
        string path = PathOf("a64.gguf");
        new GgufWriter()
            .Add("general.alignment", GgufValue.UInt32(64))
            .AddTensor("a", [3], GgmlType.F32, new byte[12])
            .AddTensor("b", [5], GgmlType.F32, Bytes(new float[] { 1, 2, 3, 4, 5 }))
            .Write(path);
        using var f = GgufFile.Open(path);
        Assert.Equal(64u, f.Alignment);
        Assert.Single(f.Metadata);
        Assert.Equal(0, f.DataOffset % 64);
        Assert.Equal(64, f.Tensors["b"].Offset);
        Assert.Equal(0, (long)(nint)f.Tensors["b"].Data % 64);
        Assert.Equal(new float[] { 1, 2, 3, 4, 5 }, f.Tensors["b"].ToTensorView().ToFloatArray());
    }

    [Fact]
    public void NoTensors_IsValid()
    {
        string path = PathOf("empty.gguf");
        new GgufWriter().Add("k", GgufValue.String("v")).Write(path);
        using var f = GgufFile.Open(path);
        Assert.Empty(f.Tensors);
        Assert.Equal("v", f.GetString("k"));
    }

    [Fact]
    public void TypedGetters_NameFileAndKey()
    {
        string path = WriteValid();
        using var f = GgufFile.Open(path);
        var e = Assert.Throws<BitMoeException>(() => f.GetUInt32("nope"));
        Assert.Equal($"{path}: missing required key 'nope'", e.Message);
        e = Assert.Throws<BitMoeException>(() => f.GetUInt32("u8"));
        Assert.Equal($"{path}: key 'u8' has type uint8, expected uint32", e.Message);
        e = Assert.Throws<BitMoeException>(() => f.GetArray<string>("arr.u32"));
        Assert.Contains("key 'arr.u32' has type array of uint32, expected array of string", e.Message);
        e = Assert.Throws<BitMoeException>(() => f.GetArray<float>("f32"));
        Assert.Contains("key 'f32' has type float32, expected array of float32", e.Message);
        e = Assert.Throws<BitMoeException>(() => f.GetString("arr.str"));
        Assert.Contains("key 'arr.str' has type array of string, expected string", e.Message);

        Assert.False(f.TryGetUInt32("nope", out _));
        Assert.True(f.TryGetString("general.architecture", out var arch));
        Assert.Equal("mhmoe", arch);
        Assert.True(f.TryGetArray<float>("arr.f32", out var floats));
        Assert.Equal(4, floats.Length);
        Assert.Throws<BitMoeException>(() => f.TryGetFloat32("u32", out _));
    }

    [Fact]
    public void CustomType_RegisteredSizeResolver()
    {
        // 2-bit rows of any length: ceil(ne0 / 4) bytes plus a 2-byte scale per row.
        var types = GgmlTypeTable.Default.With(1000, "bitmoe_tq2_rows", dims =>
            dims.Length != 2 ? -1 : checked(((dims[0] + 3) / 4 + 2) * dims[1]));
        string path = PathOf("custom.gguf");
        new GgufWriter(types)
            .AddTensor("rows", [100, 3], 1000u, new byte[27 * 3])
            .AddTensor("after", [2], GgmlType.F32, Bytes(new[] { 9f, 8f }))
            .Write(path);
        using (var f = GgufFile.Open(path, types))
        {
            var t = f.Tensors["rows"];
            Assert.Equal("bitmoe_tq2_rows", t.TypeName);
            Assert.Equal(81, t.ByteSize);
            Assert.Equal(new[] { 9f, 8f }, f.Tensors["after"].ToTensorView().ToFloatArray());
        }
        Rejects(path, "tensor 'rows' has unknown ggml type 1000");

        var e = Assert.Throws<BitMoeException>(() =>
            new GgufWriter(types).AddTensor("bad", [100], 1000u, new byte[27]).Write(PathOf("bad.gguf")));
        Assert.Contains("do not fit type bitmoe_tq2_rows", e.Message);
        AssertNoOutput(PathOf("bad.gguf"));
    }

    [Fact]
    public void TypeTable_MatchesGgml()
    {
        var t = GgmlTypeTable.Default;
        (GgmlType type, int block, int bytes)[] expected =
        [
            (GgmlType.F32, 1, 4), (GgmlType.F16, 1, 2), (GgmlType.Q4_0, 32, 18), (GgmlType.Q4_1, 32, 20),
            (GgmlType.Q5_0, 32, 22), (GgmlType.Q5_1, 32, 24), (GgmlType.Q8_0, 32, 34), (GgmlType.Q8_1, 32, 36),
            (GgmlType.Q2_K, 256, 84), (GgmlType.Q3_K, 256, 110), (GgmlType.Q4_K, 256, 144), (GgmlType.Q5_K, 256, 176),
            (GgmlType.Q6_K, 256, 210), (GgmlType.Q8_K, 256, 292), (GgmlType.I8, 1, 1), (GgmlType.I16, 1, 2),
            (GgmlType.I32, 1, 4), (GgmlType.I64, 1, 8), (GgmlType.F64, 1, 8), (GgmlType.BF16, 1, 2),
            (GgmlType.TQ1_0, 256, 54), (GgmlType.TQ2_0, 256, 66),
        ];
        foreach (var (type, block, bytes) in expected)
        {
            Assert.True(t.TryGet((uint)type, out var info), type.ToString());
            Assert.Equal(type.ToString(), info.Name);
            Assert.Equal(block, info.BlockSize);
            Assert.Equal(bytes, info.BytesPerBlock);
        }
        Assert.Equal(34u, (uint)GgmlType.TQ1_0);
        Assert.Equal(35u, (uint)GgmlType.TQ2_0);
        Assert.Equal(30u, (uint)GgmlType.BF16);
    }

    [Fact]
    public void Progress_IsReportedPerTensor()
    {
        var calls = new List<(int, int, string)>();
        new GgufWriter()
            .AddTensor("x", [4], GgmlType.F32, new byte[16])
            .AddTensor("y", [256], GgmlType.TQ1_0, s => s.Write(new byte[54]))
            .Write(PathOf("p.gguf"), (done, total, name) => calls.Add((done, total, name)));
        Assert.Equal([(1, 2, "x"), (2, 2, "y")], calls);
    }

    // ---- writer failures ----

    [Fact]
    public void Writer_MissingFolder_Fails_WithoutOutput()
    {
        string path = Path.Combine(_dir, "no-such-dir", "out.gguf");
        var e = Assert.Throws<BitMoeException>(() => new GgufWriter().AddTensor("x", [1], GgmlType.F32, new byte[4]).Write(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("does not exist", e.Message);
        Assert.False(Directory.Exists(Path.GetDirectoryName(path)));
    }

    [Fact]
    public void Writer_UnwritableFolder_Fails_WithoutOutput()
    {
        string dir = Path.Combine(_dir, "ro");
        Directory.CreateDirectory(dir);
        if (!OperatingSystem.IsWindows())
            File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserExecute);
        string probe = Path.Combine(dir, "probe");
        bool writable;
        try { File.WriteAllBytes(probe, []); File.Delete(probe); writable = true; }
        catch (UnauthorizedAccessException) { writable = false; }
        catch (IOException) { writable = false; }
        // Root ignores directory permissions; /proc refuses new files for everyone.
        if (writable) { Assert.True(OperatingSystem.IsLinux(), "need a folder that refuses writes"); dir = "/proc"; }
        string path = Path.Combine(dir, $"bitmoe-gguf-{Guid.NewGuid():N}.gguf");
        try
        {
            var e = Assert.Throws<BitMoeException>(() => new GgufWriter().AddTensor("x", [1], GgmlType.F32, new byte[4]).Write(path));
            Assert.Contains(path, e.Message);
            Assert.Contains("cannot write output", e.Message);
            AssertNoOutput(path);
        }
        finally
        {
            if (dir != "/proc" && !OperatingSystem.IsWindows())
                File.SetUnixFileMode(dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        }
    }

    [Fact]
    public void Writer_FailingCallback_LeavesNoFiles()
    {
        string path = PathOf("fail.gguf");
        var e = Assert.Throws<BitMoeException>(() => new GgufWriter()
            .AddTensor("ok", [4], GgmlType.F32, new byte[16])
            .AddTensor("boom", [256], GgmlType.TQ2_0, s => { s.Write(new byte[10]); throw new InvalidOperationException("quantizer failed"); })
            .Write(path));
        Assert.Contains(path, e.Message);
        Assert.Contains("writing tensor 'boom' failed (quantizer failed)", e.Message);
        AssertNoOutput(path);
        Assert.Empty(Directory.GetFileSystemEntries(_dir));
    }

    [Fact]
    public void Writer_FailingCallback_KeepsAnExistingFile()
    {
        string path = WriteValid("keep.gguf");
        var before = File.ReadAllBytes(path);
        Assert.Throws<BitMoeException>(() => new GgufWriter()
            .AddTensor("boom", [1], GgmlType.F32, _ => throw new IOException("disk on fire"))
            .Write(path));
        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void Writer_CallbackWritingTheWrongSize_Fails()
    {
        string path = PathOf("short.gguf");
        var e = Assert.Throws<BitMoeException>(() => new GgufWriter()
            .AddTensor("t", [256, 2], GgmlType.TQ2_0, s => s.Write(new byte[66]))
            .Write(path));
        Assert.Contains("the data callback wrote 66 bytes, expected 132", e.Message);
        AssertNoOutput(path);
    }

    [Theory]
    [InlineData("size", "holds 8 bytes but dims [3] of F32 need 12")]
    [InlineData("dup-tensor", "duplicate tensor name 't'")]
    [InlineData("dup-key", "duplicate metadata key 'k'")]
    [InlineData("type", "unknown ggml type 99")]
    [InlineData("block", "row length 100 is not a multiple of the TQ2_0 block size 256")]
    [InlineData("dims", "has 5 dims")]
    [InlineData("alignment", "general.alignment 48 is not a power of two")]
    [InlineData("alignment-type", "key 'general.alignment' has type uint64, expected uint32")]
    public void Writer_RejectsBadInput_BeforeWriting(string kind, string phrase)
    {
        string path = PathOf("bad.gguf");
        var w = new GgufWriter();
        switch (kind)
        {
            case "size": w.AddTensor("t", [3], GgmlType.F32, new byte[8]); break;
            case "dup-tensor": w.AddTensor("t", [1], GgmlType.F32, new byte[4]).AddTensor("t", [1], GgmlType.F32, new byte[4]); break;
            case "dup-key": w.Add("k", GgufValue.Bool(true)).Add("k", GgufValue.Bool(false)); break;
            case "type": w.AddTensor("t", [1], 99u, new byte[4]); break;
            case "block": w.AddTensor("t", [100], GgmlType.TQ2_0, new byte[66]); break;
            case "dims": w.AddTensor("t", [1, 1, 1, 1, 1], GgmlType.F32, new byte[4]); break;
            case "alignment": w.Add("general.alignment", GgufValue.UInt32(48)); break;
            case "alignment-type": w.Add("general.alignment", GgufValue.UInt64(32)); break;
        }
        var e = Assert.Throws<BitMoeException>(() => w.Write(path));
        Assert.Contains(path, e.Message);
        Assert.Contains(phrase, e.Message);
        AssertNoOutput(path);
    }

    // ---- reader failures ----

    [Fact]
    public void Reader_MissingFile()
    {
        Rejects(PathOf("absent.gguf"), "file not found");
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(23)]
    public void Reader_ShorterThanHeader(int length)
    {
        string path = PathOf("short.gguf");
        File.WriteAllBytes(path, File.ReadAllBytes(WriteValid()).AsSpan(0, length).ToArray());
        Rejects(path, "shorter than the GGUF header");
    }

    [Fact]
    public void Reader_BadMagic()
    {
        string path = WriteValid();
        Patch(path, b => b[0] = (byte)'X');
        Rejects(path, "bad magic");
    }

    [Theory]
    [InlineData(2u)]
    [InlineData(4u)]
    [InlineData(0x03000000u)]
    public void Reader_UnsupportedVersion(uint version)
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, 4, version));
        Rejects(path, $"unsupported GGUF version {version}");
    }

    [Fact]
    public void Reader_TruncatedMetadata_StringLength()
    {
        string path = WriteValid();
        // key, then value type (4 bytes), then the string's length.
        Patch(path, b => PutU64(b, After(b, "general.name") + 4, 1_000_000));
        Rejects(path, "truncated metadata: key 'general.name': string length 1000000 runs past the end of the file");
    }

    [Fact]
    public void Reader_TruncatedMetadata_KeyLength()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, Find(b, "u16") - 8, ulong.MaxValue));
        Rejects(path, "truncated metadata: key #5: string length");
    }

    [Fact]
    public void Reader_TruncatedMetadata_ArrayCount()
    {
        string path = WriteValid();
        // key, value type, element type, then the count.
        Patch(path, b => PutU64(b, After(b, "arr.f32") + 8, 1L << 40));
        Rejects(path, "truncated metadata: key 'arr.f32': array count 1099511627776 runs past the end of the file");
    }

    [Fact]
    public void Reader_TruncatedMetadata_StringArrayCount()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, After(b, "arr.str") + 8, ulong.MaxValue));
        Rejects(path, "truncated metadata: key 'arr.str': array count");
    }

    [Fact]
    public void Reader_TruncatedMetadata_FileCut()
    {
        string path = WriteValid();
        var b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b.AsSpan(0, After(b, "arr.f64") + 20).ToArray());
        Rejects(path, "truncated metadata: key 'arr.f64': array count 2 runs past the end of the file");
    }

    [Fact]
    public void Reader_UnknownMetadataValueType()
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "u32"), 13));
        Rejects(path, "unknown metadata value type 13 for key 'u32'");
    }

    [Fact]
    public void Reader_UnknownArrayElementType()
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "arr.i16") + 4, 99));
        Rejects(path, "unknown metadata value type 99 in the array of key 'arr.i16'");
    }

    [Fact]
    public void Reader_NestedArray()
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "arr.i16") + 4, 9));
        Rejects(path, "key 'arr.i16' is an array of arrays");
    }

    [Fact]
    public void Reader_AbsurdTensorCount()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, 8, 1UL << 62));
        Rejects(path, "truncated header: tensor count 4611686018427387904");
    }

    [Fact]
    public void Reader_AbsurdMetadataCount()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, 16, ulong.MaxValue));
        Rejects(path, $"truncated header: metadata count {ulong.MaxValue}");
    }

    [Fact]
    public void Reader_TruncatedTensorInfo()
    {
        string path = WriteValid();
        var b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b.AsSpan(0, After(b, "tensor.tq2") + 10).ToArray());
        Rejects(path, "truncated tensor info: tensor 'tensor.tq2' runs past the end of the file");
    }

    [Fact]
    public void Reader_DuplicateMetadataKey()
    {
        string path = WriteValid();
        Patch(path, b => b[Find(b, "i32") + 1] = (byte)'1');
        Patch(path, b => b[Find(b, "i12") + 2] = (byte)'6');
        Rejects(path, "duplicate metadata key 'i16'");
    }

    [Fact]
    public void Reader_UnknownTensorType()
    {
        string path = WriteValid();
        // name, n_dims (4), two dims (16), then the type.
        Patch(path, b => PutU32(b, After(b, "tensor.f32") + 4 + 16, 99));
        Rejects(path, "tensor 'tensor.f32' has unknown ggml type 99");
    }

    [Fact]
    public void Reader_DimsProductOverflow()
    {
        string path = WriteValid();
        Patch(path, b =>
        {
            int at = After(b, "tensor.f32") + 4;
            PutU64(b, at, 1UL << 40);
            PutU64(b, at + 8, 1UL << 40);
        });
        Rejects(path, "tensor 'tensor.f32': dims product overflows");
    }

    [Fact]
    public void Reader_DimensionOutOfRange()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, After(b, "tensor.f16") + 4, ulong.MaxValue));
        Rejects(path, "tensor 'tensor.f16' dims product overflows");
    }

    [Fact]
    public void Reader_BytesOverflow()
    {
        string path = WriteValid();
        // 2^61 F32 elements fit a long, their 2^63 bytes do not.
        Patch(path, b => { int at = After(b, "tensor.f32") + 4; PutU64(b, at, 1UL << 31); PutU64(b, at + 8, 1UL << 30); });
        Rejects(path, "tensor 'tensor.f32': dims product overflows");
    }

    [Theory]
    [InlineData(0u)]
    [InlineData(5u)]
    public void Reader_BadDimCount(uint nDims)
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "tensor.f16"), nDims));
        Rejects(path, $"tensor 'tensor.f16' has {nDims} dims (GGUF allows 1 to 4)");
    }

    [Fact]
    public void Reader_RowNotMultipleOfBlock()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, After(b, "tensor.tq2") + 4, 500));
        Rejects(path, "tensor 'tensor.tq2': row length 500 is not a multiple of the TQ2_0 block size 256");
    }

    [Fact]
    public void Reader_DuplicateTensorNames()
    {
        string path = PathOf("dup.gguf");
        new GgufWriter()
            .AddTensor("dup.a", [1], GgmlType.F32, new byte[4])
            .AddTensor("dup.b", [1], GgmlType.F32, new byte[4])
            .Write(path);
        Patch(path, b => b[Find(b, "dup.b") + 4] = (byte)'a');
        Rejects(path, "duplicate tensor name 'dup.a'");
    }

    [Fact]
    public void Reader_UnalignedOffset()
    {
        string path = WriteValid();
        Patch(path, b =>
        {
            int at = After(b, "tensor.f16") + 4 + 8 + 4;
            PutU64(b, at, GetU64(b, at) + 4);
        });
        Rejects(path, "tensor 'tensor.f16' offset 36 is not aligned to 32");
    }

    [Fact]
    public void Reader_BadAlignmentValue()
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "general.alignment") + 4, 48));
        Rejects(path, "general.alignment 48 is not a power of two");
    }

    [Fact]
    public void Reader_BadAlignmentType()
    {
        string path = WriteValid();
        Patch(path, b => PutU32(b, After(b, "general.alignment"), (uint)GgufValueType.Int32));
        Rejects(path, "key 'general.alignment' has type int32, expected uint32");
    }

    [Fact]
    public void Reader_OffsetPastEnd()
    {
        string path = WriteValid();
        Patch(path, b => PutU64(b, After(b, "tensor.tq2") + 4 + 16 + 4, 1UL << 40));
        Rejects(path, "tensor 'tensor.tq2' offset past end of file");
    }

    [Fact]
    public void Reader_TruncatedData()
    {
        string path = WriteValid();
        long end;
        using (var f = GgufFile.Open(path))
        {
            var last = f.Tensors["tensor.last"];
            end = f.DataOffset + last.Offset + last.ByteSize;
        }
        var b = File.ReadAllBytes(path);
        File.WriteAllBytes(path, b.AsSpan(0, (int)end - 1).ToArray());
        Rejects(path, $"truncated data: tensor 'tensor.last' (28 bytes) ends at byte {end} but the file has {end - 1}");
    }

    [Fact]
    public void Reader_FileEndsRightAfterTheLastTensor()
    {
        // Writers that do not pad the last tensor are valid.
        string path = WriteValid();
        long end;
        using (var f = GgufFile.Open(path))
        {
            var last = f.Tensors["tensor.last"];
            end = f.DataOffset + last.Offset + last.ByteSize;
        }
        File.WriteAllBytes(path, File.ReadAllBytes(path).AsSpan(0, (int)end).ToArray());
        using var g = GgufFile.Open(path);
        Assert.Equal(new[] { 1, 2, 3, 4, 5, 6, 7 }, g.Tensors["tensor.last"].ToTensorView().ToInt32Array());
    }
}
