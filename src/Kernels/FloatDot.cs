using System.Numerics.Tensors;
using System.Runtime.CompilerServices;
using System.Runtime.Intrinsics;
using System.Runtime.Intrinsics.X86;

namespace BitMoe.Kernels;

/// <summary>
/// dot(w, x) of one weight row stored as F32, F16 or BF16 with a float32 vector, the halves widened in
/// registers as they stream in (no scratch row): decoding reads the F16 lm_head once per token, and this
/// is the loop that reads it.
///
/// One summation order for every storage type: the loop is written once over a widening loader (a struct
/// type argument, specialised by the JIT), so <c>Dot(F16 row)</c> equals <c>Dot(the same row widened to
/// F32)</c> bit for bit - F16/BF16 to F32 is exact - and a batched caller may widen a block of rows once and
/// reuse it for every vector. The order: four accumulators of the widest accelerated vector over blocks of
/// 4 vectors, the rest of whole vectors into the first, the four summed pairwise, lanes summed, then the
/// scalar tail. It differs between vector widths (a float sum), so results depend on the machine, never on
/// the thread count or the batch size. <see cref="Scalar"/> is the plain reference the tests compare with.
/// </summary>
public static unsafe class FloatDot
{
    public static float F32(float* w, float* x, int n) => Dot<F32Loader, float>((byte*)w, x, n);
    public static float F16(Half* w, float* x, int n) => Dot<F16Loader, ushort>((byte*)w, x, n);
    public static float BF16(ushort* w, float* x, int n) => Dot<BF16Loader, ushort>((byte*)w, x, n);

    /// <summary>
    /// dot(w, x) for an F16 row, given <paramref name="xScaled"/> = x * <see cref="F16InputScale"/> (from
    /// <see cref="TryScaleForF16"/>): equal to <c>F16(w, x, n)</c> bit for bit, one multiply per 16 halves cheaper.
    /// The halves' bits moved into float position, without the exponent rebias, are exactly w * 2^-112 (subnormal
    /// halves included, as float subnormals), so each product w * 2^-112 * x * 2^112 is the same real number w * x
    /// and every fused multiply-add rounds the same sum. Decoding reads the F16 lm_head through this loop once per
    /// token; without the multiply in each load's dependency chain it measured 8% faster on Zen 5 (a 98 MB matrix, one
    /// thread, from memory; docs/performance.md, change 15).
    /// </summary>
    public static float F16Scaled(Half* w, float* xScaled, int n) => Dot<F16UnbiasedLoader, ushort>((byte*)w, xScaled, n);

    /// <summary>2^112: the exponent rebias from half to float, moved from the weights to the input.</summary>
    public const float F16InputScale = 5.192296858534828e33f;

    /// <summary>
    /// Multiplies x in place by <see cref="F16InputScale"/> when that is exact and finite for every element (all |x|
    /// below 2^16, no NaN) and returns true; otherwise leaves x as it is and returns false (use <see cref="F16"/>).
    /// </summary>
    public static bool TryScaleForF16(Span<float> x)
    {
        // MaxMagnitude keeps the sign of the element it finds; NaN (it returns NaN if any element is) fails the test
        if (x.IsEmpty || !(MathF.Abs(TensorPrimitives.MaxMagnitude(x)) < 65536f)) return false;
        TensorPrimitives.Multiply(x, F16InputScale, x);
        return true;
    }

    /// <summary>Index of the first infinite or NaN half (exponent field all ones) among <paramref name="n"/>, or -1.</summary>
    public static long IndexOfNonFiniteF16(Half* w, long n)
    {
        var p = (ushort*)w;
        long i = 0;
        if (Vector256.IsHardwareAccelerated)
        {
            var mask = Vector256.Create((ushort)0x7C00);
            for (; i + 16 <= n; i += 16)
                if (Vector256.EqualsAny(Vector256.Load(p + i) & mask, mask)) break;
        }
        else if (Vector128.IsHardwareAccelerated)
        {
            var mask = Vector128.Create((ushort)0x7C00);
            for (; i + 8 <= n; i += 8)
                if (Vector128.EqualsAny(Vector128.Load(p + i) & mask, mask)) break;
        }
        for (; i < n; i++)
            if ((p[i] & 0x7C00) == 0x7C00) return i;
        return -1;
    }

    /// <summary>The reference: widen each element, multiply-add left to right in float32.</summary>
    public static float Scalar(void* w, DType type, float* x, int n)
    {
        float s = 0;
        for (int i = 0; i < n; i++) s += ToSingle(w, type, i) * x[i];
        return s;
    }

    private static float ToSingle(void* w, DType type, int i) => type switch
    {
        DType.F32 => ((float*)w)[i],
        DType.F16 => (float)((Half*)w)[i],
        DType.BF16 => BitConverter.UInt32BitsToSingle((uint)((ushort*)w)[i] << 16),
        _ => throw new ArgumentOutOfRangeException(nameof(type)),
    };

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    internal static float Dot<TLoad, TElement>(byte* w, float* x, int n)
        where TLoad : struct, ILoader
        where TElement : unmanaged
    {
        int size = sizeof(TElement);
        int i = 0;
        float sum;
        if (Vector512.IsHardwareAccelerated && n >= 16)
        {
            Vector512<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 64 <= n; i += 64)
            {
                a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(w + i * size), Vector512.Load(x + i), a0);
                a1 = Vector512.FusedMultiplyAdd(TLoad.Load512(w + (i + 16) * size), Vector512.Load(x + i + 16), a1);
                a2 = Vector512.FusedMultiplyAdd(TLoad.Load512(w + (i + 32) * size), Vector512.Load(x + i + 32), a2);
                a3 = Vector512.FusedMultiplyAdd(TLoad.Load512(w + (i + 48) * size), Vector512.Load(x + i + 48), a3);
            }
            for (; i + 16 <= n; i += 16)
                a0 = Vector512.FusedMultiplyAdd(TLoad.Load512(w + i * size), Vector512.Load(x + i), a0);
            sum = Vector512.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector256.IsHardwareAccelerated && n >= 8)
        {
            Vector256<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 32 <= n; i += 32)
            {
                a0 = Vector256.FusedMultiplyAdd(TLoad.Load256(w + i * size), Vector256.Load(x + i), a0);
                a1 = Vector256.FusedMultiplyAdd(TLoad.Load256(w + (i + 8) * size), Vector256.Load(x + i + 8), a1);
                a2 = Vector256.FusedMultiplyAdd(TLoad.Load256(w + (i + 16) * size), Vector256.Load(x + i + 16), a2);
                a3 = Vector256.FusedMultiplyAdd(TLoad.Load256(w + (i + 24) * size), Vector256.Load(x + i + 24), a3);
            }
            for (; i + 8 <= n; i += 8)
                a0 = Vector256.FusedMultiplyAdd(TLoad.Load256(w + i * size), Vector256.Load(x + i), a0);
            sum = Vector256.Sum((a0 + a1) + (a2 + a3));
        }
        else if (Vector128.IsHardwareAccelerated && n >= 4)
        {
            Vector128<float> a0 = default, a1 = default, a2 = default, a3 = default;
            for (; i + 16 <= n; i += 16)
            {
                a0 = Vector128.FusedMultiplyAdd(TLoad.Load128(w + i * size), Vector128.Load(x + i), a0);
                a1 = Vector128.FusedMultiplyAdd(TLoad.Load128(w + (i + 4) * size), Vector128.Load(x + i + 4), a1);
                a2 = Vector128.FusedMultiplyAdd(TLoad.Load128(w + (i + 8) * size), Vector128.Load(x + i + 8), a2);
                a3 = Vector128.FusedMultiplyAdd(TLoad.Load128(w + (i + 12) * size), Vector128.Load(x + i + 12), a3);
            }
            for (; i + 4 <= n; i += 4)
                a0 = Vector128.FusedMultiplyAdd(TLoad.Load128(w + i * size), Vector128.Load(x + i), a0);
            sum = Vector128.Sum((a0 + a1) + (a2 + a3));
        }
        else sum = 0;
        for (; i < n; i++) sum = MathF.FusedMultiplyAdd(TLoad.Load1(w + i * size), x[i], sum);
        return sum;
    }
}
