using BenchmarkDotNet.Attributes;
using BitMoe.Kernels;

namespace BitMoe.Bench;

/// <summary>Random ternary matrices in the kernels' packed layout and random int8 activations.</summary>
internal static class Data
{
    /// <summary>
    /// The ISAs to run: every one this CPU supports, or the comma list in BITMOE_BENCH_ISAS (e.g. "avxvnni,avx2")
    /// for a shorter run (BenchmarkDotNet's --filter selects methods, not parameter values).
    /// </summary>
    public static IEnumerable<KernelIsa> Isas()
    {
        var only = Environment.GetEnvironmentVariable("BITMOE_BENCH_ISAS");
        if (string.IsNullOrWhiteSpace(only)) return Isa.Supported;
        var wanted = only.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries)
            .Select(n => Enum.Parse<KernelIsa>(n, ignoreCase: true)).ToHashSet();
        return Isa.Supported.Where(wanted.Contains);
    }

    public static byte[] PackedTernary(int rows, int cols, int seed)
    {
        var rng = new Random(seed);
        int stride = TernaryGemv.RowStride(cols);
        var packed = new byte[(long)rows * stride];
        var row = new sbyte[cols];
        for (int r = 0; r < rows; r++)
        {
            for (int i = 0; i < cols; i++) row[i] = (sbyte)(rng.Next(3) - 1);
            TernaryGemv.PackRow(row, packed.AsSpan(r * stride, stride));
        }
        return packed;
    }

    public static sbyte[] Int8(int count, int seed)
    {
        var rng = new Random(seed);
        var x = new sbyte[count];
        for (int i = 0; i < x.Length; i++) x[i] = (sbyte)rng.Next(-127, 128);
        return x;
    }
}

/// <summary>One packed ternary matrix x one int8 vector (decode), single thread, on every ISA this CPU runs.</summary>
public class TernaryGemvBenchmarks : IWeightBytes
{
    [ParamsSource(nameof(Isas))] public KernelIsa Isa;
    [ParamsSource(nameof(ShapeList))] public MatrixShape Shape = Shapes.Small[0];

    public static IEnumerable<KernelIsa> Isas => Data.Isas();
    public static IEnumerable<MatrixShape> ShapeList => Shapes.Ternary;

    private byte[] _w = [];
    private TernaryActivations _x = new();
    private int[] _y = [];

    public long WeightBytes => (long)TernaryGemv.RowStride(Shape.Cols) * Shape.Rows;

    [GlobalSetup]
    public void Setup()
    {
        _w = Data.PackedTernary(Shape.Rows, Shape.Cols, 1);
        _x = new TernaryActivations(Data.Int8(Shape.Cols, 2), Shape.Cols);
        _y = new int[Shape.Rows];
    }

    [Benchmark]
    public void Gemv() => TernaryGemv.Compute(Isa, _w, Shape.Cols, _x, _y, 0, Shape.Rows);
}

/// <summary>One packed ternary matrix x a batch of int8 vectors (prompt processing), single thread.</summary>
public class TernaryGemmBenchmarks : IWeightBytes
{
    [ParamsSource(nameof(Isas))] public KernelIsa Isa;
    [ParamsSource(nameof(ShapeList))] public MatrixShape Shape = Shapes.BitNetLarge[0];
    [Params(8, 64)] public int Batch = 8;

    public static IEnumerable<KernelIsa> Isas => Data.Isas();
    public static IEnumerable<MatrixShape> ShapeList => [.. Shapes.BitNetLarge, Shapes.MixtralSmall[0], Shapes.Small[0]];

    private byte[] _w = [];
    private TernaryActivations _x = new();
    private int[] _y = [];

    /// <summary>The weights are read once per call whatever the batch (per token: divide by Batch).</summary>
    public long WeightBytes => (long)TernaryGemv.RowStride(Shape.Cols) * Shape.Rows;

    [GlobalSetup]
    public void Setup()
    {
        _w = Data.PackedTernary(Shape.Rows, Shape.Cols, 1);
        _x = new TernaryActivations(Data.Int8(Shape.Cols * Batch, 2), Shape.Cols, Batch);
        _y = new int[Shape.Rows * Batch];
    }

    [Benchmark]
    public void Gemm() => TernaryGemm.Compute(Isa, _w, Shape.Rows, Shape.Cols, _x, _y, 0, Shape.Rows);
}

/// <summary>Float weights (F16 / F32, as lm_head and unquantized layers hold them) x one float vector, single thread.</summary>
public unsafe class FloatGemvBenchmarks : IWeightBytes, IDisposable
{
    [Params(DType.F16, DType.F32)] public DType Type;
    [ParamsSource(nameof(ShapeList))] public MatrixShape Shape = Shapes.MixtralSmall[0];

    public static IEnumerable<MatrixShape> ShapeList => Shapes.Float;

    private void* _w;
    private float[] _x = [], _y = [];

    public long WeightBytes => (long)Shape.Rows * Shape.Cols * (Type == DType.F32 ? 4 : 2);

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(3);
        long n = (long)Shape.Rows * Shape.Cols;
        _w = System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)WeightBytes, 64);
        if (Type == DType.F32) for (long i = 0; i < n; i++) ((float*)_w)[i] = rng.NextSingle() - 0.5f;
        else for (long i = 0; i < n; i++) ((Half*)_w)[i] = (Half)(rng.NextSingle() - 0.5f);
        _x = new float[Shape.Cols];
        for (int i = 0; i < _x.Length; i++) _x[i] = rng.NextSingle() - 0.5f;
        _y = new float[Shape.Rows];
    }

    [GlobalCleanup]
    public void Dispose()
    {
        if (_w != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(_w);
        _w = null;
    }

    [Benchmark]
    public void Gemv() => FloatGemv.Compute(_w, Type, Shape.Rows, Shape.Cols, _x, _y);
}

/// <summary>
/// The ternary GEMV on a matrix far larger than the L3 (1 GiB of packed weights, 1536 columns), single thread:
/// the kernel reading from DRAM, as decoding a large model does, to compare with the cache-resident shapes
/// above and with the memory read bandwidth.
/// </summary>
public class TernaryGemvDramBenchmarks : IWeightBytes
{
    public const int Cols = 1536;
    public static readonly int Rows = (int)((1L << 30) / TernaryGemv.RowStride(Cols));

    [ParamsSource(nameof(Isas))] public KernelIsa Isa;
    public static IEnumerable<KernelIsa> Isas => Data.Isas().Where(i => i != KernelIsa.Scalar);

    private byte[] _w = [];
    private TernaryActivations _x = new();
    private int[] _y = [];

    public long WeightBytes => (long)TernaryGemv.RowStride(Cols) * Rows;

    [GlobalSetup]
    public void Setup()
    {
        // Timing does not depend on the values: repeat one random 1 MiB block of valid codes.
        var block = Data.PackedTernary((1 << 20) / TernaryGemv.RowStride(Cols), Cols, 1);
        _w = GC.AllocateUninitializedArray<byte>((int)WeightBytes);
        for (long o = 0; o < _w.LongLength; o += block.Length)
            block.AsSpan(0, (int)Math.Min(block.Length, _w.LongLength - o)).CopyTo(_w.AsSpan((int)o));
        _x = new TernaryActivations(Data.Int8(Cols, 2), Cols);
        _y = new int[Rows];
    }

    [Benchmark]
    public void GemvFromMemory() => TernaryGemv.Compute(Isa, _w, Cols, _x, _y, 0, Rows);
}

/// <summary>
/// The two loops of decoding attention for one head over a KV cache of the bitnet-large shape (rows of kv_dim 1536
/// elements, head 96), in float32 and in F16 (<c>--cache-type f16</c>): the scores (<see cref="StridedRows.Dots"/>)
/// and the sum over values (<see cref="StridedRows.WeightedSum"/>), single thread, at a short and a long context.
/// </summary>
public unsafe class AttentionBenchmarks : IDisposable
{
    public const int KvDim = 1536, HeadDim = 96;

    [Params(128, 1024)] public int Positions;
    [Params(DType.F32, DType.F16)] public DType Cache;

    private float* _cache, _q, _scores, _o;
    private Half* _halves;

    [GlobalSetup]
    public void Setup()
    {
        var rng = new Random(4);
        long n = (long)Positions * KvDim;
        _cache = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(n * sizeof(float)), 64);
        _halves = (Half*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(n * sizeof(Half)), 64);
        for (long i = 0; i < n; i++) _halves[i] = (Half)(_cache[i] = rng.NextSingle() - 0.5f);
        _q = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(HeadDim * sizeof(float), 64);
        for (int i = 0; i < HeadDim; i++) _q[i] = rng.NextSingle() - 0.5f;
        _scores = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc((nuint)(Positions * sizeof(float)), 64);
        for (int i = 0; i < Positions; i++) _scores[i] = rng.NextSingle() / Positions;
        _o = (float*)System.Runtime.InteropServices.NativeMemory.AlignedAlloc(HeadDim * sizeof(float), 64);
    }

    [GlobalCleanup]
    public void Dispose()
    {
        foreach (var p in new[] { _cache, _q, _scores, _o, (float*)_halves })
            if (p != null) System.Runtime.InteropServices.NativeMemory.AlignedFree(p);
        _cache = _q = _scores = _o = null;
        _halves = null;
    }

    [Benchmark]
    public void Scores()
    {
        if (Cache == DType.F16) StridedRows.Dots(_halves, KvDim, Positions, _q, HeadDim, 0.1f, _scores);
        else StridedRows.Dots(_cache, KvDim, Positions, _q, HeadDim, 0.1f, _scores);
    }

    [Benchmark]
    public void WeightedSum()
    {
        if (Cache == DType.F16) StridedRows.WeightedSum(_halves, KvDim, Positions, _scores, HeadDim, _o);
        else StridedRows.WeightedSum(_cache, KvDim, Positions, _scores, HeadDim, _o);
    }
}
